"""GatedNet: the gated baselines, LSTM and GRU, on PyTorch's own kernels (cuDNN on CUDA).

    outputs, hidden_states = GatedNet(1, 6, 10, "gru", bidirectional=True, readout="all",
                                      sequence_length=40)(x)

The same ``(outputs, hidden_states)`` contract as :class:`~stability.model.RecurrentNet`:
hidden_states are the top layer's h_t, (T, B, n), or (T, B, 2n) = [forward h_t ; backward h_t]
for a bidirectional model. The cells are PyTorch's (gate order as ``nn.LSTM``/``nn.GRU``):

    LSTM:  i, f, g, o = σ, σ, tanh, σ of (W_ih x_t + b_ih + W_hh h_{t−1} + b_hh)
           c_t = f ⊙ c_{t−1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)
    GRU:   r, z = σ(W_i{r,z} x_t + b_i{r,z} + W_h{r,z} h_{t−1} + b_h{r,z})
           ñ_t = tanh(W_in x_t + b_in + r ⊙ (W_hn h_{t−1} + b_hn)),   h_t = (1 − z) ⊙ ñ_t + z ⊙ h_{t−1}

Integer inputs (T, B) are token ids, exactly equivalent to one-hot vectors of size
``input_size`` (the first layer's input projections are an embedding lookup of W_ih's columns).

``readout``: ``"last"`` (y_t = W_out h_t + c at every step, outputs (T, B, O)) or ``"all"``
(y = W_out vec(h_1..h_T) + c over every step's states flattened in time-major order, as the
MNIST-1D GRU of Greydanus & Kobak; outputs (1, B, O), T must equal ``sequence_length``).

Continuing a sequence (language models): ``h0`` may be the last row of the hidden_states a
previous call returned (what the training loop carries); the model then continues from that
call's whole final state (every layer's h, and the LSTM's c). Any other (B, H) tensor sets the
top layer's h (c and the lower layers start at zero); a tuple as ``nn.LSTM``/``nn.GRU`` take
it, ((L·D, B, n) h[, c]), sets every layer.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from .checks import check_choice, check_readout, check_sequence_input, check_size

#: the gated cells, by the names every transition name stands beside
GATED_CELLS = ("lstm", "gru")
#: "auto"/"native": PyTorch's kernel (cuDNN on CUDA); "loop": the cell equations step by step (reference)
GATED_ENGINES = ("auto", "native", "loop")
#: gates per cell: rows of W_ih / W_hh in units of n
GATES = {"lstm": 4, "gru": 3}
#: the parts of one layer's state
PARTS = {"lstm": ("h", "c"), "gru": ("h",)}
#: remembered final states of recent calls, for continuing a sequence
_CARRIED = 4


def lstm_step(state: Tensor, u: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """One LSTM step on the state [h, c] (B, 2n), u = W_ih x + b_ih (B, 4n); returns [h', c']."""
    n = w_hh.shape[1]
    h, c = state[..., :n], state[..., n:]
    i, f, g, o = (u + h @ w_hh.mT + b_hh).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], dim=-1)


def gru_step(h: Tensor, u: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """One GRU step on h (B, n), u = W_ih x + b_ih (B, 3n); r gates (W_hn h + b_hn) as in PyTorch."""
    hr, hz, hn = (h @ w_hh.mT + b_hh).chunk(3, dim=-1)
    ur, uz, un = u.chunk(3, dim=-1)
    r, z = torch.sigmoid(ur + hr), torch.sigmoid(uz + hz)
    candidate = torch.tanh(un + r * hn)
    return (1 - z) * candidate + z * h


STEPS = {"lstm": lstm_step, "gru": gru_step}


class GatedNet(nn.Module):
    """An LSTM or GRU (``nn.LSTM``/``nn.GRU``, time-major) with a linear readout.

    Args:
        input_size, hidden_size, output_size: I, n and O.
        cell: ``"lstm"`` or ``"gru"``.
        layers: stacked layers (default 1).
        bidirectional: a second, backward recurrence per layer; hidden_states (T, B, 2n).
        readout: ``"last"`` or ``"all"`` (module docstring); ``sequence_length`` T is required with ``"all"``.
        engine: ``"auto"``/``"native"`` (PyTorch's kernel) or ``"loop"`` (the equations step by step).
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int, cell: str = "lstm", *,
                 layers: int = 1, bidirectional: bool = False, readout: str = "last",
                 sequence_length: int | None = None, engine: str = "auto"):
        super().__init__()
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.output_size = check_size("output_size", output_size)
        self.cell = check_choice("cell", cell, GATED_CELLS)
        self.layers = check_size("layers", layers)
        self.bidirectional, self.readout_mode, self.sequence_length = check_readout(bidirectional, readout,
                                                                                   sequence_length)
        if readout == "last" and sequence_length is not None:
            raise ValueError(f"sequence_length={sequence_length!r} is only for readout='all' (readout={readout!r})")
        self.engine = check_choice(f"engine (of the gated cell {cell!r})", engine, GATED_ENGINES)
        kind = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = kind(input_size, hidden_size, num_layers=layers, bidirectional=bidirectional)
        width = self.directions * hidden_size
        self.readout = nn.Linear(width * (self.sequence_length or 1), output_size)
        self._carried: list[tuple[tuple, tuple[Tensor, ...]]] = []

    # -- description -----------------------------------------------------------------------
    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def transition_name(self) -> str:
        return self.cell

    def options(self) -> dict:
        """The model's own options (besides sizes): for logging and result rows."""
        out = {"cell": self.cell, "layers": self.layers, "bidirectional": self.bidirectional,
               "readout": self.readout_mode}
        if self.sequence_length is not None:
            out["sequence_length"] = self.sequence_length
        return out

    def transition_parameters(self) -> list[nn.Parameter]:
        """None: a gated cell has no transition (its recurrent weights are in ``other_parameters``)."""
        return []

    def other_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def extra_repr(self) -> str:
        return (f"cell={self.cell!r}, layers={self.layers}, bidirectional={self.bidirectional}, "
                f"readout={self.readout_mode!r}, engine={self.engine!r}")

    def weights(self, layer: int, direction: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(W_ih, W_hh, b_ih, b_hh) of one layer (0-based) and direction (0 forward, 1 backward)."""
        suffix = f"l{layer}" + ("_reverse" if direction else "")
        return tuple(getattr(self.rnn, f"{kind}_{suffix}") for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    # -- input checks ------------------------------------------------------------------------
    def _check_input(self, x, read_out: bool = False) -> tuple[int, int]:
        """(T, B); ``read_out``: the readout reads these states (readout "all" needs T = sequence_length)."""
        return check_sequence_input(x, self.input_size, self.readout.weight.dtype,
                                    self.sequence_length if read_out else None)

    def initial_state(self, h0, batch: int) -> tuple[Tensor, ...]:
        """The full initial state as nn.LSTM/nn.GRU take it: (h,) or (h, c), each (L·D, B, n)."""
        p = self.readout.weight
        n, k = self.hidden_size, self.layers * self.directions
        zeros = torch.zeros(k, batch, n, dtype=p.dtype, device=p.device)
        parts = len(PARTS[self.cell])
        if h0 is None:
            return (zeros,) * parts
        if isinstance(h0, (tuple, list)):
            if len(h0) != parts or not all(isinstance(s, Tensor) and tuple(s.shape) == (k, batch, n) for s in h0):
                raise ValueError(f"h0 as a tuple must hold {'(h, c)' if parts == 2 else '(h,)'}, each of shape "
                                 f"(layers·directions={k}, B={batch}, n={n}), got "
                                 f"{[tuple(getattr(s, 'shape', ())) for s in h0]}")
            return tuple(h0)
        width = self.directions * n
        if not isinstance(h0, Tensor) or tuple(h0.shape) != (batch, width):
            raise ValueError(f"h0 must be None, (B={batch}, {width}) (the top layer's h, e.g. the last row of "
                             f"hidden_states) or a tuple of (layers·directions, B, n) states; got "
                             f"{tuple(getattr(h0, 'shape', ())) if isinstance(h0, Tensor) else type(h0).__name__}")
        for (address, shape, stride, values), state in self._carried:
            if ((h0.data_ptr(), h0.shape, h0.stride(), h0.device) == (address, shape, stride, values.device)
                    and torch.equal(h0, values)):
                return state
        h = zeros.clone()
        h[k - self.directions:] = h0.reshape(batch, self.directions, n).transpose(0, 1)
        return (h, zeros) if parts == 2 else (h,)

    def _remember(self, states: Tensor, final: tuple[Tensor, ...]) -> None:
        """Remember the final state of this call under its last row of hidden_states (where it lies, and
        its values: a later tensor at the same address is taken for it only with the same values)."""
        row = states[-1].detach()
        key = (row.data_ptr(), row.shape, row.stride(), row.clone())
        self._carried = [(key, tuple(s.detach() for s in final))] + self._carried[:_CARRIED - 1]

    # -- the recurrence ------------------------------------------------------------------------
    def _layer0_projections(self, x: Tensor, direction: int) -> Tensor:
        w_ih, _, b_ih, _ = self.weights(0, direction)
        if x.is_floating_point():
            return x @ w_ih.mT + b_ih
        return nn.functional.embedding(x, w_ih.mT) + b_ih

    def _native_tokens(self, x: Tensor, hx: tuple[Tensor, ...]):
        """PyTorch's kernel on token ids: layer 0 reads the embedded projections W_ih[:, x] through a
        constant selection matrix in place of W_ih (exactly one-hot x, without the (T, B, I) one-hot)."""
        p = self.readout.weight
        g = GATES[self.cell] * self.hidden_size
        d = self.directions
        proj = torch.cat([nn.functional.embedding(x, self.weights(0, j)[0].mT) for j in range(d)], dim=-1)
        eye = torch.eye(d * g, dtype=p.dtype, device=p.device)
        flat = list(self.rnn._flat_weights)
        for j in range(d):  # per layer, per direction: w_ih, w_hh, b_ih, b_hh
            flat[4 * j] = eye[j * g:(j + 1) * g]
        kernel = torch._VF.lstm if self.cell == "lstm" else torch._VF.gru
        with warnings.catch_warnings():  # cuDNN: the substituted weights are not one contiguous chunk
            warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
            result = kernel(proj, hx if self.cell == "lstm" else hx[0], flat, True, self.layers, 0.0,
                            self.training, self.bidirectional, False)
        return result[0], tuple(result[1:])

    def _loop(self, x: Tensor, hx: tuple[Tensor, ...], keep_layers: bool = False):
        """The equations step by step (:data:`STEPS`); with ``keep_layers`` also every layer's outputs."""
        n, d, step = self.hidden_size, self.directions, STEPS[self.cell]
        layer_input, finals, outputs = x, [], []
        for layer in range(self.layers):
            per_direction = []
            for j in range(d):
                w_ih, w_hh, b_ih, b_hh = self.weights(layer, j)
                u = self._layer0_projections(x, j) if layer == 0 else layer_input @ w_ih.mT + b_ih
                if j:
                    u = u.flip(0)
                state = torch.cat([s[layer * d + j] for s in hx], dim=-1)
                seq = []
                for t in range(u.shape[0]):
                    state = step(state, u[t], w_hh, b_hh)
                    seq.append(state)
                finals.append(state)
                hs = torch.stack(seq)[..., :n]
                per_direction.append(hs.flip(0) if j else hs)
            layer_input = torch.cat(per_direction, dim=-1)
            outputs.append(layer_input)
        final = tuple(torch.stack([f[:, i * n:(i + 1) * n] for f in finals]) for i in range(len(PARTS[self.cell])))
        return (outputs if keep_layers else layer_input), final

    def recurrence(self, x: Tensor, h0=None) -> Tensor:
        """The top layer's hidden states (T, B, D·n) for inputs x."""
        return self._states(x, h0)[0]

    def _states(self, x: Tensor, h0, read_out: bool = False) -> tuple[Tensor, tuple[Tensor, ...]]:
        steps, batch = self._check_input(x, read_out)
        hx = self.initial_state(h0, batch)
        if self.engine == "loop":
            states, final = self._loop(x, hx)
        elif x.is_floating_point():
            states, final = self.rnn(x, hx if self.cell == "lstm" else hx[0])
            final = final if isinstance(final, tuple) else (final,)
        else:
            states, final = self._native_tokens(x, hx)
        self._remember(states, final)
        return states, final

    def forward(self, x: Tensor, h0=None) -> tuple[Tensor, Tensor]:
        """``(outputs, hidden_states)``: outputs (T, B, O) (readout "last") or (1, B, O) (readout "all");
        hidden_states (T, B, D·n), the top layer's h."""
        states, _ = self._states(x, h0, read_out=True)
        if self.readout_mode == "all":
            flat = states.transpose(0, 1).reshape(states.shape[1], -1)  # time-major: h_1, h_2, ... per sequence
            return self.readout(flat).unsqueeze(0), states
        return self.readout(states), states

    # -- one step at a time (probes) -----------------------------------------------------------------
    def step_views(self, x: Tensor, h0=None) -> list:
        """The recurrence as :class:`~stability.probes.steps.StepView` objects (no closed form).

        Unidirectional: one view over every layer's state concatenated, layer by layer
        ((h, c) per LSTM layer, h per GRU layer; parts named h1, c1, h2, ... when layers > 1), whose
        step runs layer 1 on u_t = W_ih x_t + b_ih and each layer above on the new h below.
        Bidirectional: one view per direction of the last layer ("forward", "backward"), each over
        that direction's (h[, c]), whose inputs u_t are the layer below's outputs (x for one layer)
        projected by that direction's W_ih; the backward view runs in reversed time. With layers > 1
        the lower layers are inputs of these views, not part of their state.
        """
        from .probes.steps import StepView

        steps, batch = self._check_input(x)
        hx = self.initial_state(h0, batch)
        n, d, parts = self.hidden_size, self.directions, PARTS[self.cell]
        k = len(parts) * n  # one layer's state size
        if not self.bidirectional:
            plan = [("forward", range(self.layers), 0)]
            names = parts if self.layers == 1 else tuple(f"{p}{l + 1}" for l in range(self.layers) for p in parts)
        else:
            plan = [(name, [self.layers - 1], j) for j, name in enumerate(("forward", "backward"))]
            names = parts
        below = None
        if self.bidirectional and self.layers > 1:
            with torch.no_grad():
                below = self._loop(x, hx, keep_layers=True)[0][-2]
        views = []
        for name, layers, j in plan:
            weights = [tuple(w.detach() for w in self.weights(layer, j)) for layer in layers]
            with torch.no_grad():
                if layers[0] == 0:
                    inputs = self._layer0_projections(x, j)
                else:
                    w_ih, _, b_ih, _ = weights[0]
                    inputs = below @ w_ih.mT + b_ih
                inputs = inputs.flip(0) if j else inputs
                initial = torch.cat([s[layer * d + j] for layer in layers for s in hx], dim=-1)
                step = stacked_step(self.cell, weights)
                state, states = initial, []
                for t in range(steps):
                    state = step(state, inputs[t])
                    states.append(state)
            top = (len(layers) - 1) * k

            def output_gradient(g: Tensor, j=j, size=len(layers) * k, top=top) -> Tensor:
                out = g.new_zeros(*g.shape[:-1], size)
                out[..., top:top + n] = g[..., j * n:(j + 1) * n]
                return out.flip(0) if j else out

            views.append(StepView(name=name, layout=tuple((p, n) for p in names), step=step,
                                  inputs=inputs.detach(), initial=initial.detach(),
                                  states=torch.stack(states).detach(), output_gradient=output_gradient))
        return views


def stacked_step(cell: str, weights: list[tuple[Tensor, Tensor, Tensor, Tensor]]):
    """``step(s, u)`` of stacked layers of ``cell`` over their states concatenated: layer 1 reads u
    (its input projections), each layer above the new h of the one below through its (W_ih, b_ih)."""
    cell_step = STEPS[cell]
    n = weights[0][1].shape[1]
    k = len(PARTS[cell]) * n

    def step(s: Tensor, u: Tensor) -> Tensor:
        new, below = [], None
        for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(weights):
            inp = u if layer == 0 else below @ w_ih.mT + b_ih
            out = cell_step(s[..., layer * k:(layer + 1) * k], inp, w_hh, b_hh)
            below = out[..., :n]
            new.append(out)
        return torch.cat(new, dim=-1) if len(new) > 1 else new[0]

    return step
