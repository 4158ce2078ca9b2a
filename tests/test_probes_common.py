"""Helpers shared by the probe tests: a duck-typed linear network and a fixed-matrix transition.

The probes accept any model with ``.transition.matrix()``, ``.activation_derivative(states)``
and ``model(x, h0) -> (outputs, hidden_states)``; :class:`LinearNet` is such a model with
φ = identity (so every one-step Jacobian is W itself).
"""
import pytest
import torch
from torch import nn

from stability.transitions import Transition


@pytest.fixture(autouse=True)
def probes_one_thread():
    """Small tensors: one thread is faster and keeps these tests light on a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Fixed(Transition):
    """A transition holding a given matrix (not registered)."""

    def __init__(self, w: torch.Tensor):
        super().__init__(w.shape[0])
        self.register_buffer("w", w.clone())

    def matrix(self):
        return self.w


class LinearNet(nn.Module):
    """h_t = W_in x_t + b + W h_{t−1}, y_t = W_out h_t + c: a linear RNN (φ' ≡ 1)."""

    def __init__(self, transition: Transition, input_size: int = 3, output_size: int = 2):
        super().__init__()
        n = transition.n
        self.transition = transition
        self.input_map = nn.Linear(input_size, n)
        self.readout = nn.Linear(n, output_size)

    def activation_derivative(self, hidden_states):
        return torch.ones_like(hidden_states)

    def forward(self, x, h0=None):
        w = self.transition.matrix()
        h = h0 if h0 is not None else x.new_zeros(x.shape[1], self.transition.n)
        states = []
        for x_t in self.input_map(x).unbind(0):
            h = x_t + h @ w.T
            states.append(h)
        states = torch.stack(states)
        return self.readout(states), states


def orthogonal(n: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64)).Q.to(dtype)


def linear_net(w: torch.Tensor, input_size: int = 3, seed: int = 0) -> LinearNet:
    torch.manual_seed(seed)
    return LinearNet(Fixed(w), input_size).to(w.dtype)


def test_linear_net_is_linear():
    w = orthogonal(5)
    model = linear_net(w)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    h0 = torch.randn(2, 5, dtype=torch.float64)
    _, states = model(x, h0)
    xw = model.input_map(x)
    expect = xw[0] + h0 @ w.T
    assert torch.allclose(states[0], expect)
    assert torch.allclose(states[1], xw[1] + expect @ w.T)
