"""Materializing W = transition.matrix(), forward + backward, for every built-in transition.

The backward pass propagates a fixed random upstream gradient dL/dW into the transition's
parameters: the cost a training step pays once per forward pass for its W.
"""
from __future__ import annotations

import torch

from .common import (BUILTIN_TRANSITIONS, DEVICES, REFLECTED_TRANSITIONS, cached, clock, prepare, reflector_count,
                     require_transition, sync)

SIZES = [64, 256, 1024]
PLAIN = [t for t in BUILTIN_TRANSITIONS if t not in REFLECTED_TRANSITIONS]
REFLECTED = REFLECTED_TRANSITIONS


def _build(name: str, n: int, device: torch.device, **options):
    from stability import transitions

    require_transition(name)
    torch.manual_seed(0)
    transition = transitions.create(name, n, **options).to(device)
    upstream = torch.randn(n, n, generator=torch.Generator().manual_seed(1)).to(device)
    return transition, upstream


def _forward_backward(case) -> None:
    transition, upstream = case
    transition.zero_grad(set_to_none=True)
    transition.matrix().backward(upstream)


class _Materialize:
    timer = staticmethod(clock)
    timeout = 240
    repeat = (2, 10, 10.0)
    rounds = 2

    def _time(self):
        _forward_backward(self.case)
        sync(self.device)


class MaterializeW(_Materialize):
    """W = matrix() and the backward pass of a fixed upstream gradient into the parameters."""
    params = (PLAIN, SIZES, DEVICES)
    param_names = ["transition", "n", "device"]

    def setup(self, transition, n, device):
        self.device = prepare(device)
        self.case = cached((transition, n, device), lambda: _build(transition, n, self.device))

    def time_matrix_forward_backward(self, transition, n, device):
        self._time()


class MaterializeReflectedW(_Materialize):
    """As MaterializeW, for the transitions built from k Householder reflectors (k = n/4 or n)."""
    params = (REFLECTED, SIZES, ["n/4", "n"], DEVICES)
    param_names = ["transition", "n", "reflectors", "device"]

    def setup(self, transition, n, reflectors, device):
        self.device = prepare(device)
        k = reflector_count(reflectors, n)
        self.case = cached((transition, n, k, device),
                           lambda: _build(transition, n, self.device, reflectors=k))

    def time_matrix_forward_backward(self, transition, n, reflectors, device):
        self._time()
