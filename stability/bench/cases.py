"""The timed operations of ``stability bench``: (a) reflector products, (b) training steps and
W builds, (c) the Jacobian decay curve and one forward + backward pass; their sizes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from .timing import Case

INPUT_SIZE = OUTPUT_SIZE = 16


@dataclass(frozen=True)
class Sizes:
    reflect_n: int = 256      # (a) k = n for compact WY vs sequential and vs one GEMM
    lapack_n: int = 512       # (a) k = n for compact WY vs torch.linalg.householder_product
    hidden: int = 128         # (b) n
    steps: int = 1000         # (b) T
    batch: int = 64           # (b) B
    probe_batch: int = 8      # (c) B; n and T as in (b)


FULL = Sizes()
QUICK = Sizes(reflect_n=24, lapack_n=32, hidden=16, steps=20, batch=4, probe_batch=2)
GROUPS = ("a", "b", "c")


def _leaf(shape, device, generator=None, fill: Callable | None = None) -> torch.Tensor:
    t = torch.randn(*shape, generator=generator)
    if fill is not None:
        t = fill(t)
    return t.to(device).requires_grad_(True)


def reflector_cases(sizes: Sizes, device: torch.device, checks: dict) -> list[Case]:
    """Cases of figure (a); records the agreement of the compared forms in ``checks``."""
    from ..transitions import householder_product, householder_product_reference

    gen = torch.Generator().manual_seed(1)
    n = sizes.reflect_n
    # the Spectral-RNN layout of U: k = n reflectors, row j zero before column j
    vectors = _leaf((n, n), device, gen, torch.triu)
    upstream = torch.randn(n, n, generator=gen).to(device)
    a = _leaf((n, n), device, gen)
    b = _leaf((n, n), device, gen)

    def wy():
        vectors.grad = None
        householder_product(vectors).backward(upstream)

    def sequential():
        vectors.grad = None
        householder_product_reference(vectors).backward(upstream)

    def gemm():
        a.grad = b.grad = None
        (a @ b).backward(upstream)

    m = sizes.lapack_n
    packed = _leaf((m, m), device, gen)  # LAPACK layout: reflector i is e_i + packed[i+1:, i]
    upstream_m = torch.randn(m, m, generator=gen).to(device)
    eye_m = torch.eye(m, device=device)

    def wy_from_packed():
        return householder_product((torch.tril(packed, -1) + eye_m).T)

    def lapack_from_packed():
        lower = torch.tril(packed, -1)
        tau = 2.0 / (1.0 + (lower * lower).sum(0))
        return torch.linalg.householder_product(packed, tau)

    def wy_packed():
        packed.grad = None
        wy_from_packed().backward(upstream_m)

    def lapack():
        packed.grad = None
        lapack_from_packed().backward(upstream_m)

    # the compared forms must compute the same thing (forward and gradient)
    q_wy = householder_product(vectors)
    q_seq = householder_product_reference(vectors)
    g_wy = torch.autograd.grad(q_wy, vectors, upstream)[0]
    g_seq = torch.autograd.grad(q_seq, vectors, upstream)[0]
    checks["wy_vs_sequential_max_abs_diff"] = float((q_wy - q_seq).detach().abs().max())
    checks["wy_vs_sequential_grad_max_rel_diff"] = float((g_wy - g_seq).abs().max() / g_seq.abs().max())
    q1, q2 = wy_from_packed(), lapack_from_packed()
    g1 = torch.autograd.grad(q1, packed, upstream_m)[0]
    g2 = torch.autograd.grad(q2, packed, upstream_m)[0]
    checks["wy_vs_torch_householder_product_max_abs_diff"] = float((q1 - q2).detach().abs().max())
    checks["wy_vs_torch_householder_product_grad_max_rel_diff"] = float((g1 - g2).abs().max() / g2.abs().max())

    return [Case(f"wy_{n}", wy), Case(f"sequential_{n}", sequential), Case(f"gemm_{n}", gemm),
            Case(f"wy_{m}", wy_packed), Case(f"torch_householder_product_{m}", lapack)]


class TorchRNN(nn.Module):
    """``torch.nn.RNN`` (tanh, dense W) with the same readout as RecurrentNet: the floor."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size)
        self.readout = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        states, _ = self.rnn(x)
        return self.readout(states), states


def transition_options(name: str, n: int) -> dict:
    """k = n reflectors for every transition that takes a reflector count."""
    from ..transitions import option_names

    return {"reflectors": n} if "reflectors" in option_names(name) else {}


def training_cases(sizes: Sizes, device: torch.device, names: list[str]) -> list[Case]:
    """Cases of figure (b): a training step per model, and W's build per transition."""
    from ..model import RecurrentNet

    gen = torch.Generator().manual_seed(2)
    n, steps, batch = sizes.hidden, sizes.steps, sizes.batch
    x = torch.randn(steps, batch, INPUT_SIZE, generator=gen).to(device)
    target = torch.randn(steps, batch, OUTPUT_SIZE, generator=gen).to(device)
    w_upstream = torch.randn(n, n, generator=gen).to(device)

    def step_fn(model: nn.Module):
        def step():
            model.zero_grad(set_to_none=True)
            out, _ = model(x)
            nn.functional.mse_loss(out, target).backward()
        return step

    def build_fn(transition):
        def build():
            transition.zero_grad(set_to_none=True)
            transition.matrix().backward(w_upstream)
        return build

    torch.manual_seed(3)
    cases = [Case("step_torch.nn.RNN", step_fn(TorchRNN(INPUT_SIZE, n, OUTPUT_SIZE).to(device)))]
    for name in names:
        model = RecurrentNet(INPUT_SIZE, n, OUTPUT_SIZE, transition=name,
                             **transition_options(name, n)).to(device)
        cases.append(Case(f"step_{name}", step_fn(model)))
        cases.append(Case(f"build_{name}", build_fn(model.transition)))
    return cases


def probe_cases(sizes: Sizes, device: torch.device, checks: dict) -> list[Case]:
    """Cases of figure (c): the whole Jacobian decay curve on the closed-form path and on the
    general path (torch.func VJPs / JVPs of the step, as for a gated cell), and one forward +
    backward pass; records how far the timed method (the sketch, at this n) is from the exact
    norms, and the general path from the closed one, in ``checks``."""
    from ..model import RecurrentNet
    from ..probes import jacobian_decay

    gen = torch.Generator().manual_seed(4)
    x = torch.randn(sizes.steps, sizes.probe_batch, INPUT_SIZE, generator=gen).to(device)
    torch.manual_seed(5)
    model = RecurrentNet(INPUT_SIZE, sizes.hidden, OUTPUT_SIZE, transition="dense").to(device)

    def forward_backward():
        model.zero_grad(set_to_none=True)
        out, _ = model(x)
        out.sum().backward()

    def decay_curve():
        jacobian_decay(model, x)

    def decay_curve_general():
        jacobian_decay(model, x, path="general")

    sketch, exact = jacobian_decay(model, x, method="sketch"), jacobian_decay(model, x, method="exact")
    for norm in ("spectral", "frobenius"):
        a, b = sketch[norm].to_numpy(), exact[norm].to_numpy()
        ok = (a > 0) & (b > 0)  # float32 underflows to 0 at long gaps in both
        checks[f"jacobian_sketch_vs_exact_{norm}_max_abs_log_ratio"] = float(np.abs(np.log(a[ok] / b[ok])).max())
    general = jacobian_decay(model, x, method="sketch", path="general")
    checks["jacobian_general_vs_closed_max_abs_log_ratio"] = float(max(
        np.abs(general[f"log_{norm}"] - sketch[f"log_{norm}"]).max() for norm in ("spectral", "frobenius")))

    return [Case("probe_forward_backward", forward_backward), Case("probe_jacobian_decay", decay_curve),
            Case("probe_jacobian_decay_general", decay_curve_general)]
