"""Numeric figures that must not drift between commits (asv ``track_``; smaller is better).

- the orthogonality error ||WᵀW − I||_F (float64) of each orthogonal transition after 100
  Adam steps (n = 64, T = 50, batch 16, lr 1e-2, seed 0);
- the gradient half-life at init (steps) fitted by ``stability.probes.half_life`` to the
  Jacobian decay probe (n = 128, T = 100, batch 8, seed 0; the probe's case in bench_probes);
- the largest gradient difference of the fused (and native) engine against the plain loop,
  relative to the largest gradient entry (n = 64, T = 100, batch 8, seed 0).
"""
from __future__ import annotations

import torch

from .bench_probes import build_case, probe_functions
from .common import BUILTIN_TRANSITIONS, DEVICES, make_model, prepare, require_transition, sequence_batch, train_step

ORTHOGONAL = ["cayley", "exprnn", "householder"]


class Orthogonality:
    params = (ORTHOGONAL, DEVICES)
    param_names = ["transition", "device"]
    timeout = 240
    unit = "||W^T W - I||_F"

    def setup(self, transition, device):
        self.device = prepare(device)

    def track_orthogonality_error_after_100_steps(self, transition, device):
        model = make_model(transition, 64, self.device, seed=0)
        x, y = sequence_batch(50, 16, self.device, seed=1)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(100):
            train_step(model, x, y)
            opt.step()
        with torch.no_grad():
            w = model.transition.matrix().to(torch.float64)
        eye = torch.eye(w.shape[0], dtype=w.dtype, device=w.device)
        return float(torch.linalg.matrix_norm(w.T @ w - eye))


class GradientHalfLife:
    params = (BUILTIN_TRANSITIONS, DEVICES)
    param_names = ["transition", "device"]
    timeout = 240
    unit = "steps"

    def setup(self, transition, device):
        self.device = prepare(device)
        require_transition(transition)
        self.jacobian_decay, self.half_life = probe_functions()

    def track_half_life_at_init(self, transition, device):
        model, x = build_case(transition, self.device)
        return float(self.half_life(self.jacobian_decay(model, x))["half_life"])


class EngineAgreement:
    params = (BUILTIN_TRANSITIONS, ["fused", "native"], DEVICES)
    param_names = ["transition", "engine", "device"]
    timeout = 240
    unit = "relative"

    def setup(self, transition, engine, device):
        self.device = prepare(device)
        require_transition(transition)

    def track_gradient_difference_vs_loop(self, transition, engine, device):
        model = make_model(transition, 64, self.device, seed=0)
        x, y = sequence_batch(100, 8, self.device, seed=1)
        grads = {}
        for name in ("loop", engine):
            model.engine = name
            train_step(model, x, y)
            grads[name] = [p.grad.detach().clone() for p in model.parameters()]
        diff = max(float((a - b).abs().max()) for a, b in zip(grads["loop"], grads[engine]))
        scale = max(float(a.abs().max()) for a in grads["loop"])
        return diff / scale
