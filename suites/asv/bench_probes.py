"""The Jacobian decay probe (``stability.probes.jacobian_decay``) on a RecurrentNet at init.

n = 128, T = 100, batch 8, k = n reflectors where a transition takes them. The probe is
imported lazily: where it is absent (an older commit) the cases are skipped.
"""
from __future__ import annotations

import torch

from .common import BUILTIN_TRANSITIONS, DEVICES, cached, clock, make_model, prepare, sequence_batch, sync

HIDDEN, STEPS, BATCH = 128, 100, 8


def probe_functions():
    """(jacobian_decay, half_life) from stability.probes, or NotImplementedError (asv: skipped)."""
    try:
        from stability import probes
        return probes.jacobian_decay, probes.half_life
    except (ImportError, AttributeError) as exc:
        raise NotImplementedError(f"stability.probes.jacobian_decay is not available: {exc}") from exc


def build_case(transition: str, device: torch.device):
    model = make_model(transition, HIDDEN, device, seed=0)
    x, _ = sequence_batch(STEPS, BATCH, device, seed=1)
    return model, x


class JacobianDecay:
    """Wall time of one Jacobian decay probe (norms of dh_T/dh_t along one trajectory)."""
    params = (BUILTIN_TRANSITIONS, DEVICES)
    param_names = ["transition", "device"]
    timer = staticmethod(clock)
    timeout = 240
    repeat = (2, 5, 10.0)
    rounds = 2

    def setup(self, transition, device):
        self.device = prepare(device)
        self.jacobian_decay, _ = probe_functions()
        self.case = cached((transition, device), lambda: build_case(transition, self.device))

    def time_jacobian_decay(self, transition, device):
        self.jacobian_decay(*self.case)
        sync(self.device)
