"""The timed operations of ``stability bench``: (a) reflector products, (b) training steps and
W builds, (c) the Jacobian decay curve and one forward + backward pass; their sizes."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import torch
from torch import nn

from .baselines import TORCH_RNN, TorchRNN, alternative_model, orthogonality_error
from .timing import Case

INPUT_SIZE = OUTPUT_SIZE = 16


@dataclass(frozen=True)
class Sizes:
    reflect_n: int = 256      # (a) k = n for compact WY vs sequential and vs one GEMM
    lapack_n: int = 512       # (a) k = n for compact WY vs torch.linalg.householder_product
    hidden: int = 128         # (c) n, and (b)'s n when train_points is empty
    steps: int = 1000         # (c) T, and (b)'s T when train_points is empty
    batch: int = 64           # (b) B
    probe_batch: int = 8      # (c) B
    train_points: tuple[tuple[int, int], ...] = ()  # (b) the (n, T) points

    @property
    def training_points(self) -> tuple[tuple[int, int], ...]:
        """The (n, T) points of figure (b)."""
        return self.train_points or ((self.hidden, self.steps),)


FULL = Sizes()
QUICK = Sizes(reflect_n=24, lapack_n=32, hidden=16, steps=20, batch=4, probe_batch=2)
#: issue 20's table: long sequences at small n, short ones at large n (where building W counts)
TABLE_POINTS = ((64, 1000), (128, 1000), (256, 1000), (256, 100), (512, 100))
QUICK_TABLE_POINTS = ((8, 20), (16, 6))  # the same shape of grid at smoke-test sizes
SIZE_SETS = ("default", "table")


def sizes_for(spec: str, quick: bool = False) -> Sizes:
    """Sizes for ``--sizes``: "default" (figure (b) at n = 128, T = 1000), "table" (TABLE_POINTS)
    or a comma list of NxT points such as "256x100,512x100"; --quick shrinks everything else."""
    base = QUICK if quick else FULL
    spec = spec.strip()
    if spec == "default":
        return base
    if spec == "table":
        return replace(base, train_points=QUICK_TABLE_POINTS if quick else TABLE_POINTS)
    points = []
    for item in (s.strip() for s in spec.split(",")):
        match = re.fullmatch(r"(\d+)[xX](\d+)", item)
        if not match or min(int(match[1]), int(match[2])) < 1:
            raise ValueError(f"{item!r} is not a size: allowed are {' or '.join(SIZE_SETS)}, or a "
                             f"comma list of NxT points with n, T >= 1 (e.g. 256x100,512x100)")
        points.append((int(match[1]), int(match[2])))
    return replace(base, train_points=tuple(dict.fromkeys(points)))


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

    cases = [Case(f"wy_{n}", wy), Case(f"sequential_{n}", sequential), Case(f"gemm_{n}", gemm),
             Case(f"wy_{m}", wy_packed), Case(f"torch_householder_product_{m}", lapack)]
    return cases + _build_cases((n, m), device, gen, {c.name for c in cases})


def _build_cases(sizes: tuple[int, ...], device: torch.device, gen: torch.Generator,
                 timed: set[str]) -> list[Case]:
    """Issue 20's W-build figures at each n: U from k = n triangular-layout reflectors (the
    blocked product), the Spectral-RNN's whole W = U Σ Vᵀ (k = n), and one n×n GEMM where
    ``timed`` (the case names already made) has none, each forward + backward."""
    from ..transitions import create
    from ..transitions.householder import triangular_householder_product

    cases = []
    for n in sizes:
        vectors = _leaf((n, n), device, gen, torch.triu)
        upstream = torch.randn(n, n, generator=gen).to(device)
        a, b = _leaf((n, n), device, gen), _leaf((n, n), device, gen)
        torch.manual_seed(3)
        spectral = create("spectral", n, reflectors=n).to(device)

        def gemm(a=a, b=b, upstream=upstream):
            a.grad = b.grad = None
            (a @ b).backward(upstream)

        def triangular(vectors=vectors, upstream=upstream):
            vectors.grad = None
            triangular_householder_product(vectors).backward(upstream)

        def spectral_w(t=spectral, upstream=upstream):
            t.zero_grad(set_to_none=True)
            t.matrix().backward(upstream)

        if f"gemm_{n}" not in timed:  # one GEMM case per size, shared with the other figures of (a)
            cases.append(Case(f"gemm_{n}", gemm))
        cases += [Case(f"build_triangular_u_{n}", triangular), Case(f"build_spectral_w_{n}", spectral_w)]
    return cases


def transition_options(name: str, n: int) -> dict:
    """k = n reflectors for every transition that takes a reflector count."""
    from ..transitions import option_names

    return {"reflectors": n} if "reflectors" in option_names(name) else {}


def case_name(kind: str, model: str, n: int, steps: int) -> str:
    """The name of a figure (b) case: ``step_<model>@n<n>_T<T>`` or ``build_<transition>@...``."""
    return f"{kind}_{model}@n{n}_T{steps}"


def training_cases(sizes: Sizes, device: torch.device, names: list[str], alternatives=(),
                   checks: dict | None = None) -> list[Case]:
    """Cases of figure (b) at every (n, T) point: a training step of torch.nn.RNN, of a
    RecurrentNet per transition and of each alternative (what users would write instead), and
    W's build per transition; records each alternative's max |WᵀW − I| in ``checks``."""
    from ..model import RecurrentNet

    cases = []
    for n, steps in sizes.training_points:
        gen = torch.Generator().manual_seed(2)
        x = torch.randn(steps, sizes.batch, INPUT_SIZE, generator=gen).to(device)
        target = torch.randn(steps, sizes.batch, OUTPUT_SIZE, generator=gen).to(device)
        w_upstream = torch.randn(n, n, generator=gen).to(device)

        def step_fn(model: nn.Module, x=x, target=target):
            def step():
                model.zero_grad(set_to_none=True)
                out, _ = model(x)
                nn.functional.mse_loss(out, target).backward()
            return step

        def build_fn(transition, w_upstream=w_upstream):
            def build():
                transition.zero_grad(set_to_none=True)
                transition.matrix().backward(w_upstream)
            return build

        torch.manual_seed(3)
        rnn = TorchRNN(INPUT_SIZE, n, OUTPUT_SIZE).to(device)
        cases.append(Case(case_name("step", TORCH_RNN, n, steps), step_fn(rnn)))
        for name in names:
            model = RecurrentNet(INPUT_SIZE, n, OUTPUT_SIZE, transition=name,
                                 **transition_options(name, n)).to(device)
            cases.append(Case(case_name("step", name, n, steps), step_fn(model)))
            cases.append(Case(case_name("build", name, n, steps), build_fn(model.transition)))
        for name in alternatives:
            model = alternative_model(name, INPUT_SIZE, n, OUTPUT_SIZE).to(device)
            if checks is not None:
                checks[f"orthogonality_{name}_n{n}_max_abs"] = orthogonality_error(model)
            cases.append(Case(case_name("step", name, n, steps), step_fn(model)))
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
