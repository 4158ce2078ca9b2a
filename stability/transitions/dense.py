"""A free (unconstrained) recurrent matrix: the plain RNN and its IRNN variant.

W is an n×n parameter. Inits: ``xavier`` (Glorot uniform, default), ``orthogonal``
(Saxe et al. 2014), ``identity`` (IRNN, Le, Jaitly & Hinton 2015) and ``normal``
(entries N(0, 1/n), rescaled so that the spectral radius is ``spectral_radius``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import Transition, check_choice, register

INITS = ("xavier", "orthogonal", "identity", "normal")


@register("dense")
class DenseTransition(Transition):
    def __init__(self, n: int, init: str = "xavier", spectral_radius: float = 1.0):
        super().__init__(n)
        self.init = check_choice("init", init, INITS)
        if not (isinstance(spectral_radius, (int, float)) and spectral_radius > 0):
            raise ValueError(f"spectral_radius={spectral_radius!r} must be a number > 0")
        self.spectral_radius = float(spectral_radius)
        self.weight = nn.Parameter(torch.empty(n, n))
        self.reset_parameters()

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
        return opts
