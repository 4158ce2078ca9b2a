"""RecurrentNet: input map, a pluggable transition W, a readout; W is built once per forward.

    a_t = W_in x_t + b + W h_{t−1},   h_t = φ(a_t),   y_t = W_out h_t + c

The transition is any registered :class:`~stability.transitions.Transition`; the whole
sequence then runs in one recurrence engine (:mod:`stability.recurrence`).
Integer inputs of shape (T, B) are read as token ids, exactly equivalent to one-hot
vectors of size ``input_size`` (computed as an embedding lookup of W_in's columns).

Two options change the architecture (both off by default):

- ``bidirectional=True``: a second recurrence runs backward in time, with its own transition
  (same name and options, its own parameters) and its own input map; the hidden states are
  (T, B, 2n) = [forward h_t ; backward h_t] aligned at time t (``nn.RNN``'s layout). The backward
  direction is the forward recurrence on the time-reversed inputs, reversed back.
- ``readout="all"``: one output per sequence, y = W_out vec(h_1..h_T) + c over every step's
  state flattened in time-major order (h_1 first; as ``outputs.reshape(B, T·2n)`` of a
  batch-first bidirectional GRU), returned as outputs of shape (1, B, O) so that
  ``outputs[-1]`` is the prediction. It needs ``sequence_length`` = T (W_out is (O, T·2n)).
  ``readout="last"`` (the default): y_t = W_out h_t + c at every step, outputs (T, B, O).

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
from .recurrence import (ENGINES, NONLINEARITIES, FusedNetwork, ReadSteps, derivative_from_output, fused_network,
                         fused_recurrence, loop_recurrence, native_bidirectional_recurrence, native_recurrence,
                         resolve_engine)
from .checks import check_choice, check_readout, check_sequence_input, check_size

#: initializations of the input map and readout (see the module docstring)
INPUT_INITS = ("torch", "glorot", "official")
#: steps of δ the fused backward keeps at once (FusedNetwork's ring)
FUSED_CHUNK = 64
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
        input_init: ``"torch"`` (default), ``"glorot"`` or ``"official"`` (module docstring);
            with ``readout="all"`` the readout's fan-in is T·2n (T·n unidirectional).
        bidirectional: add a backward-in-time recurrence (module docstring). It needs a
            transition *name*: a ready Transition instance is refused (a copy of it would start
            both directions from the same W, unlike two transitions created by name).
        readout: ``"last"`` (default) or ``"all"`` (module docstring).
        sequence_length: T, required with ``readout="all"`` (inputs must then have T steps);
            accepted and unused with ``readout="last"``.
        **transition_options: passed to the transition's constructor.

    Attributes: ``transition`` (forward direction), ``backward_transition`` (None when
    unidirectional), ``input_map``, ``backward_input_map`` (None when unidirectional),
    ``readout`` (the nn.Linear W_out, c; the option is ``readout_mode``).
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int,
                 transition: str | transitions.Transition = "dense", nonlinearity: str = "tanh",
                 engine: str = "auto", input_init: str = "torch", *, bidirectional: bool = False,
                 readout: str = "last", sequence_length: int | None = None, **transition_options):
        super().__init__()
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.output_size = check_size("output_size", output_size)
        self.nonlinearity = check_choice("nonlinearity", nonlinearity, NONLINEARITIES)
        self.engine = check_choice("engine", engine, ENGINES)
        self.input_init = check_choice("input_init", input_init, INPUT_INITS)
        self.bidirectional, self.readout_mode, self.sequence_length = check_readout(bidirectional, readout,
                                                                                   sequence_length)
        if isinstance(transition, transitions.Transition):
            if transition_options:
                raise TypeError("transition options are only accepted with a transition name")
            if transition.n != hidden_size:
                raise ValueError(f"transition has n={transition.n} but hidden_size={hidden_size}")
            if bidirectional:
                raise TypeError("bidirectional=True needs a transition name, so that each direction creates its "
                                f"own; got a ready {type(transition).__name__} instance")
            self.transition = transition
        elif isinstance(transition, str):
            self.transition = transitions.create(transition, hidden_size, **transition_options)
        else:
            raise TypeError(f"transition must be a name or a Transition, got {type(transition).__name__}")
        self.backward_transition = (transitions.create(transition, hidden_size, **transition_options)
                                    if bidirectional else None)
        self.input_map = nn.Linear(input_size, hidden_size)
        self.backward_input_map = nn.Linear(input_size, hidden_size) if bidirectional else None
        state_size = hidden_size * self.directions
        self.readout = nn.Linear(state_size * (sequence_length if readout == "all" else 1), output_size)
        if self.input_init != "torch":  # "torch": nn.Linear has just drawn them
            self.reset_input_and_readout()

    @property
    def directions(self) -> int:
        """1, or 2 when bidirectional."""
        return 2 if self.bidirectional else 1

    def _transitions(self) -> list[transitions.Transition]:
        return [self.transition] + ([self.backward_transition] if self.bidirectional else [])

    def _input_maps(self) -> list[nn.Linear]:
        return [self.input_map] + ([self.backward_input_map] if self.bidirectional else [])

    @torch.no_grad()
    def reset_input_and_readout(self) -> None:
        """(Re-)initialize W_in, b, W_out, c as ``input_init`` says (``"torch"``: nn.Linear's own)."""
        if self.input_init == "torch":
            for input_map in self._input_maps():
                input_map.reset_parameters()
            self.readout.reset_parameters()
            return
        for input_map in self._input_maps():
            nn.init.xavier_uniform_(input_map.weight)
            nn.init.zeros_(input_map.bias)
        if self.input_init == "glorot":
            nn.init.xavier_uniform_(self.readout.weight)
            nn.init.zeros_(self.readout.bias)
        else:
            std = OFFICIAL_READOUT_STD
            nn.init.trunc_normal_(self.readout.weight, std=std, a=-2 * std, b=2 * std)
            nn.init.trunc_normal_(self.readout.bias, std=std, a=-2 * std, b=2 * std)

    def options(self) -> dict:
        """The model's own options (besides sizes and the transition's): for logging and result rows."""
        return {"nonlinearity": self.nonlinearity, "input_init": self.input_init,
                "bidirectional": self.bidirectional, "readout": self.readout_mode,
                "sequence_length": self.sequence_length}

    @property
    def transition_name(self) -> str:
        return self.transition.name or type(self.transition).__name__

    def transition_parameters(self) -> list[nn.Parameter]:
        """The parameters of every direction's transition (forward first)."""
        return [p for t in self._transitions() for p in t.parameters()]

    def other_parameters(self) -> list[nn.Parameter]:
        ids = {id(p) for p in self.transition_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    def activation_derivative(self, hidden_states: Tensor) -> Tensor:
        """φ'(a_t) for every state, from the states themselves (diagonal of ∂h_t/∂a_t)."""
        return derivative_from_output(hidden_states, self.nonlinearity)

    def _check_input(self, x: Tensor, h0: Tensor | None, read_out: bool = False) -> tuple[int, int]:
        """(T, B); ``read_out``: the readout reads these states (readout "all" needs T = sequence_length)."""
        steps, batch = check_sequence_input(x, self.input_size, self.input_map.weight.dtype,
                                            self.sequence_length if read_out and self.readout_mode == "all" else None)
        if h0 is not None:
            if not isinstance(h0, Tensor):
                raise TypeError(f"h0 must be a torch.Tensor or None, got {type(h0).__name__}")
            if self.bidirectional and tuple(h0.shape) != (2, batch, self.hidden_size):
                raise ValueError(f"h0 of a bidirectional model must have shape (2, B={batch}, hidden_size="
                                 f"{self.hidden_size}) (forward, backward; as nn.RNN), got {tuple(h0.shape)}")
            if not self.bidirectional and tuple(h0.shape) != (batch, self.hidden_size):
                raise ValueError(f"h0 must have shape (B={batch}, hidden_size={self.hidden_size}), "
                                 f"got {tuple(h0.shape)}")
        return steps, batch

    def _initial_states(self, batch: int, h0: Tensor | None) -> list[Tensor]:
        """One (B, n) initial state per direction (zeros where h0 is None)."""
        if h0 is None:
            p = self.input_map.weight
            zeros = torch.zeros(batch, self.hidden_size, dtype=p.dtype, device=p.device)
            return [zeros] * self.directions
        return list(h0.unbind(0)) if self.bidirectional else [h0]

    @staticmethod
    def _project(x: Tensor, input_map: nn.Linear) -> Tensor:
        if x.dtype in (torch.int64, torch.int32):
            return nn.functional.embedding(x, input_map.weight.T) + input_map.bias
        return input_map(x)

    def project_inputs(self, x: Tensor) -> Tensor:
        """W_in x_t + b for every step, as one (T, B, n) tensor; bidirectional: both directions'
        (each with its own W_in, b), concatenated to (T, B, 2n), in forward time order."""
        return torch.cat([self._project(x, m) for m in self._input_maps()], dim=2) if self.bidirectional \
            else self._project(x, self.input_map)

    def _direction(self, engine: str, x: Tensor, h0: Tensor, w: Tensor, input_map: nn.Linear) -> Tensor:
        """The states (T, B, n) of one direction run forward in time over x."""
        if engine == "native" and x.is_floating_point():
            return native_recurrence(x, h0, w, self.nonlinearity, input_map.weight, input_map.bias, self.training)
        if engine == "fused":
            return FusedNetwork.apply(x, h0, w, input_map.weight, input_map.bias, self.nonlinearity == "relu",
                                      FUSED_CHUNK)
        xw = self._project(x, input_map)
        if engine == "native":  # token ids: feed the projections through an identity input map
            eye = torch.eye(self.hidden_size, dtype=w.dtype, device=w.device)
            return native_recurrence(xw, h0, w, self.nonlinearity, eye, torch.zeros_like(input_map.bias),
                                     self.training)
        return loop_recurrence(xw, h0, w, self.nonlinearity)

    def recurrence(self, x: Tensor, h0: Tensor | None = None, w: Tensor | list[Tensor] | None = None) -> Tensor:
        """The hidden states (T, B, n · directions) for inputs x; W is materialized here once unless
        given (bidirectional: a pair (forward W, backward W))."""
        self._check_input(x, h0)
        return self._recurrence(x, h0, w)

    def _recurrence(self, x: Tensor, h0: Tensor | None, w: Tensor | list[Tensor] | None) -> Tensor:
        """:meth:`recurrence` on inputs already checked."""
        h0s = self._initial_states(x.shape[1], h0)
        if w is None:
            ws = [t.matrix() for t in self._transitions()]
        elif self.bidirectional:
            if isinstance(w, Tensor) or len(w) != 2:
                raise TypeError("w of a bidirectional model must be a pair (forward W, backward W)")
            ws = list(w)
        else:
            ws = [w]
        engine = resolve_engine(self.engine, self.input_map.weight.device)
        if not self.bidirectional:
            return self._direction(engine, x, h0s[0], ws[0], self.input_map)
        if engine == "native" and x.is_floating_point():
            weights = [(w_d, m.weight, m.bias) for w_d, m in zip(ws, self._input_maps())]
            return native_bidirectional_recurrence(x, torch.stack(h0s), weights, self.nonlinearity, self.training)
        forward = self._direction(engine, x, h0s[0], ws[0], self.input_map)
        backward = self._direction(engine, x.flip(0), h0s[1], ws[1], self.backward_input_map)
        return torch.cat([forward, backward.flip(0)], dim=2)

    def read(self, states: Tensor) -> Tensor:
        """The outputs for hidden states (T, B, n · directions): (T, B, O), or (1, B, O) for readout "all"."""
        if self.readout_mode == "all":
            return self.readout(states.transpose(0, 1).reshape(states.shape[1], -1)).unsqueeze(0)
        if resolve_engine(self.engine, states.device) == "fused":  # backward only over the steps read
            return ReadSteps.apply(states, self.readout.weight, self.readout.bias)
        return self.readout(states)

    def forward(self, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Return ``(outputs, hidden_states)``: (T, B, output_size) — (1, B, output_size) with
        readout "all" — and (T, B, hidden_size · directions).

        With the fused engine, unidirectional with readout "last", the input map, recurrence and
        readout run as one :func:`~stability.recurrence.fused_network` (same results as the
        separate modules); otherwise each direction runs its own
        :class:`~stability.recurrence.FusedNetwork`.
        """
        steps, batch = self._check_input(x, h0, read_out=True)
        p = self.input_map.weight
        if resolve_engine(self.engine, p.device) == "fused" and not self.bidirectional and self.readout_mode == "last":
            if h0 is None:
                h0 = torch.zeros(batch, self.hidden_size, dtype=p.dtype, device=p.device)
            return fused_network(x, h0, self.transition.matrix(), p, self.input_map.bias,
                                 self.readout.weight, self.readout.bias, self.nonlinearity, FUSED_CHUNK)
        states = self._recurrence(x, h0, None)
        return self.read(states), states

    def step_views(self, x: Tensor, h0: Tensor | None = None) -> list:
        """Each direction's recurrence as a :class:`~stability.probes.steps.StepView`:
        s_t = φ(u_t + W s_{t−1}), u_t = W_in x_t + b, with the closed form J_t = diag(φ'(a_t)) W
        (state: h, S = n; W, W_in, b of that direction).

        Unidirectional: one view, ``"forward"``. Bidirectional: ``"forward"`` and ``"backward"``;
        the backward view runs in its own time order (inputs and states reversed: its step t is
        time T−1−t), and its ``output_gradient`` takes columns n:2n of ∂L/∂hidden_states,
        reversed in time. ``h0`` as for :meth:`forward`; any T (the readout is not involved).
        """
        from .probes.steps import StepView

        steps, batch = self._check_input(x, h0)
        n = self.hidden_size
        h0s = [h.detach() for h in self._initial_states(batch, h0)]
        with torch.no_grad():
            ws = [t.matrix().detach() for t in self._transitions()]
            inputs = [self._project(x, m).detach() for m in self._input_maps()]
            own_order = [inputs[0]] + ([inputs[1].flip(0)] if self.bidirectional else [])
            if resolve_engine(self.engine, ws[0].device) == "fused":  # on the projections above, not again
                runs = [fused_recurrence(u, h, w, self.nonlinearity) for u, h, w in zip(own_order, h0s, ws)]
            else:
                states = self._recurrence(x, h0, ws if self.bidirectional else ws[0]).detach()
                runs = [states[..., :n]] + ([states[..., n:].flip(0)] if self.bidirectional else [])
        phi = torch.tanh if self.nonlinearity == "tanh" else torch.relu

        def stepper(w: Tensor):
            def step(s: Tensor, u: Tensor) -> Tensor:
                return phi(u + s @ w.mT)
            return step

        forward_states = runs[0]
        views = [StepView(name="forward", layout=(("h", n),), step=stepper(ws[0]), inputs=inputs[0],
                          initial=h0s[0], states=forward_states,
                          output_gradient=(lambda g: g[..., :n]) if self.bidirectional else (lambda g: g),
                          closed_form=(ws[0], self.activation_derivative(forward_states)))]
        if self.bidirectional:
            backward_states = runs[1]
            views.append(StepView(name="backward", layout=(("h", n),), step=stepper(ws[1]),
                                  inputs=own_order[1], initial=h0s[1], states=backward_states,
                                  output_gradient=lambda g: g[..., n:].flip(0),
                                  closed_form=(ws[1], self.activation_derivative(backward_states))))
        return views

    def extra_repr(self) -> str:
        extra = "".join([", bidirectional=True" if self.bidirectional else "",
                         f", readout='all', sequence_length={self.sequence_length}"
                         if self.readout_mode == "all" else ""])
        return (f"nonlinearity={self.nonlinearity!r}, engine={self.engine!r}, "
                f"input_init={self.input_init!r}{extra}")
