"""RecurrentNet: input map, a pluggable transition W, a readout; W is built once per forward.

    a_t = W_in x_t + b + W h_{t−1},   h_t = φ(a_t),   y_t = W_out h_t + c

The transition is any registered :class:`~stability.transitions.Transition`; the whole
sequence then runs in one recurrence engine (:mod:`stability.recurrence`).
Integer inputs of shape (T, B) are read as token ids, exactly equivalent to one-hot
vectors of size ``input_size`` (computed as an embedding lookup of W_in's columns).

``input_init`` chooses the initialization of W_in, b, W_out, c:

- ``"torch"`` (default): ``nn.Linear``'s own, weights and biases U(±1/√fan_in);
- ``"glorot"``: Glorot-uniform weights, U(±√(6/(fan_in + fan_out))), and zero biases, the
  TensorFlow ``get_variable`` defaults of the official Spectral-RNN cell;
- ``"official"``: exactly the official Spectral-RNN code (``code/spectral_rnn.py``, ``code/rnn.py``):
  Glorot-uniform W_in and zero b, but W_out and c truncated normal (σ = 0.1, cut at ±0.2).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from . import transitions
from .recurrence import (ENGINES, NONLINEARITIES, derivative_from_output, fused_network, fused_recurrence,
                         loop_recurrence, native_recurrence, resolve_engine)
from .checks import check_choice, check_size

#: initializations of the input map and readout (see the module docstring)
INPUT_INITS = ("torch", "glorot", "official")
#: the official readout's truncated normal: standard deviation, cut at ±2σ (TensorFlow's truncated_normal)
OFFICIAL_READOUT_STD = 0.1


class RecurrentNet(nn.Module):
    """A single-layer RNN whose recurrent matrix comes from a pluggable transition.

    Args:
        input_size, hidden_size, output_size: the sizes I, n and O.
        transition: a registered transition name (see ``stability.transitions.available()``)
            or a ready :class:`Transition` of size ``hidden_size``.
        nonlinearity: ``"tanh"`` or ``"relu"`` (the official Spectral-RNN code uses relu).
        engine: ``"auto"`` (fused BPTT on CPU, PyTorch's kernel on CUDA), ``"fused"``,
            ``"native"`` or ``"loop"`` (the plain reference).
        input_init: ``"torch"`` (default), ``"glorot"`` or ``"official"`` (module docstring).
        **transition_options: passed to the transition's constructor.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int,
                 transition: str | transitions.Transition = "dense", nonlinearity: str = "tanh",
                 engine: str = "auto", input_init: str = "torch", **transition_options):
        super().__init__()
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.output_size = check_size("output_size", output_size)
        self.nonlinearity = check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        self.engine = check_choice("engine", engine, ENGINES)
        self.input_init = check_choice("input_init", input_init, INPUT_INITS)
        if isinstance(transition, transitions.Transition):
            if transition_options:
                raise TypeError("transition options are only accepted with a transition name")
            if transition.n != hidden_size:
                raise ValueError(f"transition has n={transition.n} but hidden_size={hidden_size}")
            self.transition = transition
        elif isinstance(transition, str):
            self.transition = transitions.create(transition, hidden_size, **transition_options)
        else:
            raise TypeError(f"transition must be a name or a Transition, got {type(transition).__name__}")
        self.input_map = nn.Linear(input_size, hidden_size)
        self.readout = nn.Linear(hidden_size, output_size)
        if self.input_init != "torch":  # "torch": nn.Linear has just drawn them
            self.reset_input_and_readout()

    @torch.no_grad()
    def reset_input_and_readout(self) -> None:
        """(Re-)initialize W_in, b, W_out, c as ``input_init`` says (``"torch"``: nn.Linear's own)."""
        if self.input_init == "torch":
            self.input_map.reset_parameters()
            self.readout.reset_parameters()
            return
        nn.init.xavier_uniform_(self.input_map.weight)
        nn.init.zeros_(self.input_map.bias)
        if self.input_init == "glorot":
            nn.init.xavier_uniform_(self.readout.weight)
            nn.init.zeros_(self.readout.bias)
        else:
            std = OFFICIAL_READOUT_STD
            nn.init.trunc_normal_(self.readout.weight, std=std, a=-2 * std, b=2 * std)
            nn.init.trunc_normal_(self.readout.bias, std=std, a=-2 * std, b=2 * std)

    def options(self) -> dict:
        """The model's own options (besides sizes and the transition's): for logging and result rows."""
        return {"nonlinearity": self.nonlinearity, "input_init": self.input_init}

    @property
    def transition_name(self) -> str:
        return self.transition.name or type(self.transition).__name__

    def transition_parameters(self) -> list[nn.Parameter]:
        return list(self.transition.parameters())

    def other_parameters(self) -> list[nn.Parameter]:
        ids = {id(p) for p in self.transition.parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    def activation_derivative(self, hidden_states: Tensor) -> Tensor:
        """φ'(a_t) for every state, from the states themselves (diagonal of ∂h_t/∂a_t)."""
        return derivative_from_output(hidden_states, self.nonlinearity)

    def _check_input(self, x: Tensor, h0: Tensor | None) -> tuple[int, int]:
        if not isinstance(x, Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        p = self.input_map.weight
        if x.dtype in (torch.int64, torch.int32):
            if x.dim() != 2:
                raise ValueError(f"token input must have shape (T, B), got {tuple(x.shape)}")
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.input_size):
                raise ValueError(f"token ids must lie in 0..{self.input_size - 1}, "
                                 f"got range {int(x.min())}..{int(x.max())}")
        else:
            if x.dim() != 3 or x.shape[2] != self.input_size:
                raise ValueError(f"x must have shape (T, B, input_size={self.input_size}), got {tuple(x.shape)}")
            if x.dtype != p.dtype:
                raise TypeError(f"x has dtype {x.dtype} but the model's parameters are {p.dtype}")
        if x.shape[0] < 1 or x.shape[1] < 1:
            raise ValueError(f"x must hold at least one step and one sequence, got shape {tuple(x.shape)}")
        steps, batch = x.shape[0], x.shape[1]
        if h0 is not None and tuple(h0.shape) != (batch, self.hidden_size):
            raise ValueError(f"h0 must have shape (B={batch}, hidden_size={self.hidden_size}), got {tuple(h0.shape)}")
        return steps, batch

    def project_inputs(self, x: Tensor) -> Tensor:
        """W_in x_t + b for every step, as one (T, B, n) tensor."""
        if x.dtype in (torch.int64, torch.int32):
            return nn.functional.embedding(x, self.input_map.weight.T) + self.input_map.bias
        return self.input_map(x)

    def recurrence(self, x: Tensor, h0: Tensor | None = None, w: Tensor | None = None) -> Tensor:
        """The hidden states (T, B, n) for inputs x; W is materialized here once unless given."""
        steps, batch = self._check_input(x, h0)
        p = self.input_map.weight
        if h0 is None:
            h0 = torch.zeros(batch, self.hidden_size, dtype=p.dtype, device=p.device)
        if w is None:
            w = self.transition.matrix()
        engine = resolve_engine(self.engine, p.device)
        if engine == "native" and x.is_floating_point():
            return native_recurrence(x, h0, w, self.nonlinearity, self.input_map.weight,
                                     self.input_map.bias, self.training)
        xw = self.project_inputs(x)
        if engine == "native":  # token ids: feed the projections through an identity input map
            eye = torch.eye(self.hidden_size, dtype=p.dtype, device=p.device)
            return native_recurrence(xw, h0, w, self.nonlinearity, eye, torch.zeros_like(self.input_map.bias),
                                     self.training)
        if engine == "loop":
            return loop_recurrence(xw, h0, w, self.nonlinearity)
        return fused_recurrence(xw, h0, w, self.nonlinearity)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Return ``(outputs, hidden_states)``: (T, B, output_size) and (T, B, hidden_size).

        With the fused engine the input map, recurrence and readout run as one
        :class:`~stability.recurrence.FusedNetwork` (same results as the separate modules).
        """
        p = self.input_map.weight
        if resolve_engine(self.engine, p.device) != "fused":
            states = self.recurrence(x, h0)
            return self.readout(states), states
        steps, batch = self._check_input(x, h0)
        if h0 is None:
            h0 = torch.zeros(batch, self.hidden_size, dtype=p.dtype, device=p.device)
        return fused_network(x, h0, self.transition.matrix(), p, self.input_map.bias,
                             self.readout.weight, self.readout.bias, self.nonlinearity)

    def step_views(self, x: Tensor, h0: Tensor | None = None) -> list:
        """The recurrence as one :class:`~stability.probes.steps.StepView`: s_t = φ(u_t + W s_{t−1}),
        u_t = W_in x_t + b, with the closed form J_t = diag(φ'(a_t)) W (state: h, S = n)."""
        from .probes.steps import StepView

        steps, batch = self._check_input(x, h0)
        p = self.input_map.weight
        if h0 is None:
            h0 = torch.zeros(batch, self.hidden_size, dtype=p.dtype, device=p.device)
        with torch.no_grad():
            w = self.transition.matrix().detach()
            inputs = self.project_inputs(x).detach()
            states = self.recurrence(x, h0, w).detach()
        phi = torch.tanh if self.nonlinearity == "tanh" else torch.relu

        def step(s: Tensor, u: Tensor) -> Tensor:
            return phi(u + s @ w.mT)

        return [StepView(name="forward", layout=(("h", self.hidden_size),), step=step, inputs=inputs,
                         initial=h0.detach(), states=states, output_gradient=lambda g: g,
                         closed_form=(w, self.activation_derivative(states)))]

    def extra_repr(self) -> str:
        return f"nonlinearity={self.nonlinearity!r}, engine={self.engine!r}, input_init={self.input_init!r}"
