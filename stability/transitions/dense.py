"""A free (unconstrained) recurrent matrix: the plain RNN and its IRNN variant.

W is an n×n parameter. Inits: ``xavier`` (Glorot uniform, default), ``orthogonal``
(Saxe et al. 2014), ``identity`` (IRNN, Le, Jaitly & Hinton 2015) and ``normal``
(entries N(0, 1/n), rescaled so that the spectral radius is ``spectral_radius``), or the
initial W of another transition (``init_from``, ``init_options``; e.g. ``init_from="cayley"``
for an orthogonal start drawn as scoRNN draws it).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Transition, check_choice, check_square, register

INITS = ("xavier", "orthogonal", "identity", "normal")


@register("dense")
class DenseTransition(Transition):
    def __init__(self, n: int, init: str = "xavier", spectral_radius: float = 1.0,
                 init_from: str | None = None, init_options: dict | None = None):
        super().__init__(n)
        self.init = check_choice("init", init, INITS)
        if not (isinstance(spectral_radius, (int, float)) and spectral_radius > 0):
            raise ValueError(f"spectral_radius={spectral_radius!r} must be a number > 0")
        self.spectral_radius = float(spectral_radius)
        self.weight = nn.Parameter(torch.empty(n, n))
        source = self.start_from(init_from, init_options)
        with torch.random.fork_rng(devices=[], enabled=source is not None):
            self.reset_parameters()
        self.finish_start(source)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        w = self.weight
        if self.init == "xavier":
            nn.init.xavier_uniform_(w)
        elif self.init == "orthogonal":
            nn.init.orthogonal_(w)
        elif self.init == "identity":
            w.copy_(torch.eye(self.n))
        else:
            w.normal_(0.0, self.n ** -0.5)
            if w.device.type == "meta":  # shape-only build (parameter counting): nothing to rescale
                return
            radius = torch.linalg.eigvals(w.double()).abs().max().item()
            w.mul_(self.spectral_radius / radius)

    def matrix(self) -> Tensor:
        return self.weight

    def options(self) -> dict:
        opts = {"init": self.init}
        if self.init == "normal":
            opts["spectral_radius"] = self.spectral_radius
        opts.update(init_from=self.init_from, init_options=self.init_options)
        return opts

    def inverse(self, w: Tensor, tol: float | None = None) -> dict[str, Tensor]:
        """Every n×n matrix: the weight is ``w`` itself."""
        return {"weight": check_square(w, self.n, "dense inverse").detach().clone()}
