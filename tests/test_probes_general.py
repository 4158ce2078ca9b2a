"""The general per-step Jacobian path (``path="general"``: torch.func VJPs / JVPs of a model's step).

- On every registered transition it agrees with the closed form J_t = diag(φ'_t) W to 1e-10
  (float64) for the Jacobian decay (exact and sketch), the gradient flow and the Lyapunov spectrum.
- On LSTM and GRU steps (test-local StepViews built from nn.LSTMCell / nn.GRUCell weights) it
  agrees with ``torch.autograd.functional.jacobian`` of the whole unrolled map and with the
  gradients autograd keeps for every state.
- Several views (a bidirectional model) give frames with a ``direction`` column and registry rows
  with per-direction names; a model that exposes no step is a one-line TypeError.
"""
import numpy as np
import pytest
import torch
from torch import nn

from stability import RecurrentNet, transitions
from stability.probes import gradient_flow, jacobian_decay, lyapunov_spectrum, measure, spectrum
from stability.probes.steps import StepView

from test_probes_common import linear_net, orthogonal, probes_one_thread  # noqa: F401 (fixture)

F64 = torch.float64


def close(a, b, rel=1e-10):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return np.abs(a - b).max() <= rel * max(np.abs(b).max(), 1e-300)


# ---------------------------------------------------------------------------------------
# general vs closed on every registered transition
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", transitions.available())
def test_general_matches_closed_form(name):
    torch.manual_seed(0)
    model = RecurrentNet(3, 20, 2, name).double()  # n = 20 > 2·block: the exact method's tracked subspace runs
    x = torch.randn(40, 2, 3, dtype=F64)
    for method in ("exact", "sketch"):
        closed = jacobian_decay(model, x, method=method, path="closed")
        general = jacobian_decay(model, x, method=method, path="general")
        assert closed.attrs["path"] == "closed" and general.attrs["path"] == "general"
        assert list(general.columns) == list(closed.columns)
        for col in ("log_spectral", "log_frobenius"):  # |Δ log| = relative difference of the norms
            assert np.abs(general[col] - closed[col]).max() < 1e-10, (method, col)
    y = torch.randn(40, 2, 2, dtype=F64)
    loss = lambda out, target: ((out - target) ** 2).sum()  # noqa: E731
    closed = gradient_flow(model, x, loss, y, per_sample=True, path="closed")
    general = gradient_flow(model, x, loss, y, per_sample=True, path="general")
    assert close(general.grad_norm, closed.grad_norm) and general.attrs["path"] == "general"
    assert close(general.attrs["grad_ratio"], closed.attrs["grad_ratio"])
    closed = lyapunov_spectrum(model, x, per_sample=True, path="closed")
    general = lyapunov_spectrum(model, x, per_sample=True, path="general")
    assert close(general.exponent, closed.exponent)


def test_general_path_rescales_float32():
    """Inputs ×3 saturate tanh: the norms fall far below float32's range; the general path's
    rescaling keeps them, as the closed form's does (float32 rounding apart)."""
    torch.manual_seed(1)
    model = RecurrentNet(3, 24, 2, "dense")
    x = 3 * torch.randn(300, 2, 3)
    for method in ("exact", "sketch"):
        closed = jacobian_decay(model, x, method=method, path="closed")
        general = jacobian_decay(model, x, method=method, path="general")
        assert closed.log_frobenius.min() < -120  # ‖P_g‖ < 1e-52: below float32's smallest number
        assert np.isfinite(general.log_frobenius).all()
        assert np.abs(general.log_frobenius - closed.log_frobenius).max() < 1e-3


# ---------------------------------------------------------------------------------------
# LSTM and GRU: test-local StepViews from nn.LSTMCell / nn.GRUCell weights
# ---------------------------------------------------------------------------------------
class CellNet(nn.Module):
    """One nn.LSTMCell / nn.GRUCell unrolled over time with a readout; hidden_states are the h's.
    h0 is the whole state (B, S): (h, c) for the LSTM."""

    def __init__(self, cell: str, input_size: int = 3, n: int = 4, output_size: int = 2):
        super().__init__()
        self.kind, self.n = cell, n
        self.cell = (nn.LSTMCell if cell == "lstm" else nn.GRUCell)(input_size, n)
        self.readout = nn.Linear(n, output_size)
        self.size = 2 * n if cell == "lstm" else n

    def forward(self, x, h0=None):
        s = x.new_zeros(x.shape[1], self.size) if h0 is None else h0
        states = []
        for x_t in x.unbind(0):
            if self.kind == "lstm":
                h, c = self.cell(x_t, (s[:, :self.n], s[:, self.n:]))
                s = torch.cat([h, c], 1)
            else:
                s = h = self.cell(x_t, s)
            states.append(h)
        states = torch.stack(states)
        return self.readout(states), states

    def step(self, s, u):
        """One step from the cell's weights (u = W_ih x_t + b_ih, precomputed)."""
        n, w_hh, b_hh = self.n, self.cell.weight_hh.detach(), self.cell.bias_hh.detach()
        if self.kind == "lstm":
            i, f, g, o = (u + s[:, :n] @ w_hh.T + b_hh).chunk(4, 1)
            c = torch.sigmoid(f) * s[:, n:] + torch.sigmoid(i) * torch.tanh(g)
            return torch.cat([torch.sigmoid(o) * torch.tanh(c), c], 1)
        ur, uz, un = u.chunk(3, 1)
        hr, hz, hn = (s @ w_hh.T + b_hh).chunk(3, 1)
        r, z = torch.sigmoid(ur + hr), torch.sigmoid(uz + hz)
        return (1 - z) * torch.tanh(un + r * hn) + z * s

    def view(self, x, h0=None, name="forward", columns=None, flip=False) -> StepView:
        with torch.no_grad():
            inputs = (x @ self.cell.weight_ih.T + self.cell.bias_ih).detach()
            s = x.new_zeros(x.shape[1], self.size) if h0 is None else h0.detach()
            initial, states = s, []
            for u in inputs.unbind(0):
                s = self.step(s, u)
                states.append(s)
        columns = columns or slice(0, self.n)
        extra = self.size - self.n

        def output_gradient(g):
            g = g[..., columns]
            g = g.flip(0) if flip else g
            return torch.cat([g, g.new_zeros(*g.shape[:2], extra)], 2)

        layout = (("h", self.n), ("c", self.n)) if self.kind == "lstm" else (("h", self.n),)
        return StepView(name=name, layout=layout, step=self.step, inputs=inputs, initial=initial,
                        states=torch.stack(states), output_gradient=output_gradient)

    def step_views(self, x, h0=None):
        return [self.view(x, h0)]


def cell_net(kind, n=4, seed=0):
    torch.manual_seed(seed)
    return CellNet(kind, n=n).double()


def unrolled(model, x, b, start, end):
    """s_{start−1} ↦ s_{end} for sample b: the map whose Jacobian is J_end ··· J_start."""
    view = model.step_views(x)[0]

    def run(s):
        s = s.unsqueeze(0)
        for t in range(start, end + 1):
            s = model.step(s, view.inputs[t, b:b + 1])
        return s.squeeze(0)
    return run, view


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_cell_step_is_the_cell(kind):
    model = cell_net(kind)
    x = torch.randn(5, 2, 3, dtype=F64)
    view = model.step_views(x)[0]
    _, states = model(x)
    assert torch.allclose(view.states[..., :model.n], states, rtol=0, atol=1e-13)
    assert view.describe() == ("(h, c), S = 8" if kind == "lstm" else "h, S = 4")


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_cells_match_autograd_jacobian(kind):
    """Every gap's ‖P_g‖₂, ‖P_g‖_F against SVDs of torch.autograd.functional.jacobian of the unrolled map."""
    model, steps = cell_net(kind), 6
    x = torch.randn(steps, 2, 3, dtype=F64)
    df = jacobian_decay(model, x, method="exact")  # S <= 16: an SVD at every gap
    sketch = jacobian_decay(model, x, method="sketch", probes=model.size)  # a complete frame: Frobenius exact
    assert df.attrs["path"] == "general" and df.attrs["state"] == model.step_views(x)[0].describe()
    for b in range(2):
        for g in range(steps):
            run, view = unrolled(model, x, b, steps - g, steps - 1)
            start = view.states[steps - 1 - g, b]
            p = torch.autograd.functional.jacobian(run, start) if g else torch.eye(model.size, dtype=F64)
            row = df[(df.gap == g) & (df["sample"] == b)].iloc[0]
            srow = sketch[(sketch.gap == g) & (sketch["sample"] == b)].iloc[0]
            assert close(row.spectral, torch.linalg.matrix_norm(p, 2))
            assert close(row.frobenius, torch.linalg.matrix_norm(p))
            assert close(srow.frobenius, torch.linalg.matrix_norm(p))


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_cells_lyapunov_match_autograd(kind):
    """warmup 0: the QR method's sums are log |diag R| of the whole product's QR, M Q₀ = Q R (k = 4:
    the whole product's smallest singular values are lost to rounding, ~1e-19 of the largest)."""
    model, steps, k = cell_net(kind), 6, 4
    x = torch.randn(steps, 2, 3, dtype=F64)
    df = lyapunov_spectrum(model, x, k, warmup=0, per_sample=True, seed=3)
    gen = torch.Generator().manual_seed(3)
    q0 = torch.linalg.qr(torch.randn(model.size, k, generator=gen, dtype=F64)).Q
    for b in range(2):
        run, view = unrolled(model, x, b, 0, steps - 1)
        m = torch.autograd.functional.jacobian(run, view.initial[b])
        r = torch.linalg.qr(m @ q0).R
        expect = torch.sort(torch.log(r.diagonal().abs()) / steps, descending=True).values
        assert close(df[df["sample"] == b].exponent, expect)


def state_gradients(model, x, loss_fn, y):
    """∂L/∂s_t total (T, B, S) by autograd: every state retains its gradient."""
    view = model.step_views(x)[0]
    s, kept = view.initial.clone().requires_grad_(True), []
    for u in view.inputs.unbind(0):
        s = model.step(s, u)
        s.retain_grad()
        kept.append(s)
    w = model.readout
    outputs = torch.stack([k[:, :model.n] for k in kept]) @ w.weight.detach().T + w.bias.detach()
    loss_fn(outputs, y).backward()
    return torch.stack([k.grad for k in kept])


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_cells_gradient_flow_match_autograd(kind):
    model = cell_net(kind)
    x, y = torch.randn(7, 2, 3, dtype=F64), torch.randn(7, 2, 2, dtype=F64)
    loss = lambda out, target: ((out - target) ** 2).sum()  # noqa: E731
    df = gradient_flow(model, x, loss, y, per_sample=True)
    ref = state_gradients(model, x, loss, y).norm(dim=2)  # (T, B)
    assert close(df.grad_norm, ref.reshape(-1))
    assert model.cell.weight_hh.grad is None  # probes leave no .grad


def test_closed_path_needs_a_closed_form():
    model, x = cell_net("lstm"), torch.randn(5, 2, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"path='closed' needs a step with the closed form .* 'forward' view "
                                         r"\(\(h, c\), S = 8\) has none; allowed here: 'auto', 'general'"):
        jacobian_decay(model, x, path="closed")
    with pytest.raises(ValueError, match=r"path='both' is not known; allowed: 'auto', 'closed', 'general'"):
        lyapunov_spectrum(model, x, path="both")


def test_duck_model_has_no_general_path():
    model, x = linear_net(orthogonal(5)), torch.randn(6, 2, 3, dtype=F64)
    assert jacobian_decay(model, x).attrs["path"] == "closed"
    with pytest.raises(ValueError, match=r"path='general' needs the model's step: this model exposes only "
                                         r"the closed form"):
        jacobian_decay(model, x, path="general")


def test_model_without_steps_is_one_line_error():
    x = torch.randn(5, 2, 3, dtype=F64)
    for probe in (lambda m: jacobian_decay(m, x), lambda m: lyapunov_spectrum(m, x),
                  lambda m: gradient_flow(m, x, lambda o, t: o.sum(), None)):
        with pytest.raises(TypeError, match=r"a probe asked of a model that exposes no step") as err:
            probe(nn.Linear(3, 3))
        assert "\n" not in str(err.value) and ".step_views(x, h0)" in str(err.value)
    with pytest.raises(TypeError, match=r"^model must be a recurrent model with .transition.matrix\(\) .* CellNet "
                                        r"exposes steps but has no transition matrix") as err:
        spectrum(cell_net("gru"))
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------
# several views: a bidirectional model
# ---------------------------------------------------------------------------------------
class TwoWay(nn.Module):
    """A bidirectional model of two CellNets: hidden_states (T, B, 2n) = [forward h_t; backward h_t]."""

    def __init__(self, kind="lstm", n=4):
        super().__init__()
        self.n = n
        self.fwd, self.bwd = cell_net(kind, n, seed=0), cell_net(kind, n, seed=1)
        self.readout = nn.Linear(2 * n, 2).double()

    def forward(self, x, h0=None):
        states = torch.cat([self.fwd(x)[1], self.bwd(x.flip(0))[1].flip(0)], 2)
        return self.readout(states), states

    def step_views(self, x, h0=None):
        n = self.n
        return [self.fwd.view(x), self.bwd.view(x.flip(0), name="backward", columns=slice(n, 2 * n), flip=True)]


def test_bidirectional_frames_and_rows():
    model, steps = TwoWay(), 6
    x, y = torch.randn(steps, 2, 3, dtype=F64), torch.randn(steps, 2, 2, dtype=F64)
    df = jacobian_decay(model, x)
    assert list(df.columns) == ["direction", "gap", "sample", "spectral", "frobenius", "log_spectral",
                                "log_frobenius"]
    assert len(df) == 2 * steps * 2 and df.attrs["directions"] == ["forward", "backward"]
    assert df.attrs["path"] == "general" and df.attrs["state"] == "(h, c), S = 8"
    # the backward direction is the backward cell run over the reversed sequence
    alone = jacobian_decay(model.bwd, x.flip(0))
    back = df[df.direction == "backward"].reset_index(drop=True)
    assert close(back.log_frobenius, alone.log_frobenius)

    loss = lambda out, target: ((out - target) ** 2).sum()  # noqa: E731
    flow = gradient_flow(model, x, loss, y, per_sample=True)
    assert set(flow.direction) == {"forward", "backward"} and "grad_ratio[backward]" in flow.attrs
    # reference: every state of both directions retains its gradient
    states = {}
    for name, cell, seq in (("forward", model.fwd, x), ("backward", model.bwd, x.flip(0))):
        view = cell.view(seq)
        s, kept = view.initial.clone().requires_grad_(True), []
        for u in view.inputs.unbind(0):
            s = cell.step(s, u)
            s.retain_grad()
            kept.append(s)
        states[name] = kept
    hidden = torch.cat([torch.stack([k[:, :4] for k in states["forward"]]),
                        torch.stack([k[:, :4] for k in states["backward"]]).flip(0)], 2)
    loss(hidden @ model.readout.weight.detach().T + model.readout.bias.detach(), y).backward()
    for name, kept in states.items():
        ref = torch.stack([k.grad for k in kept]).norm(dim=2).reshape(-1)
        assert close(flow[flow.direction == name].grad_norm, ref), name

    lyap = lyapunov_spectrum(model, x, k=3)
    assert list(lyap.columns) == ["direction", "index", "exponent"] and len(lyap) == 6
    rows = {m for _, _, m, _ in measure("jacobian", model, "init", x=x)}
    assert {"half_life", "half_life[backward]", "jacobian_spectral", "jacobian_spectral[backward]"} <= rows
    rows = {m for _, _, m, _ in measure("lyapunov", model, "init", x=x)}
    assert {"lyapunov_max", "lyapunov_max[backward]"} <= rows
    rows = {m for _, _, m, _ in measure("gradient_flow", model, "init", x=x, loss_fn=loss, y=y)}
    assert {"grad_ratio", "grad_ratio[backward]", "grad_norm[backward]"} <= rows


def test_single_view_frames_keep_their_columns():
    model, x = RecurrentNet(3, 5, 2).double(), torch.randn(6, 2, 3, dtype=F64)
    assert list(jacobian_decay(model, x).columns) == ["gap", "sample", "spectral", "frobenius", "log_spectral",
                                                      "log_frobenius"]
    assert list(lyapunov_spectrum(model, x).columns) == ["index", "exponent"]
    rows = {m for _, _, m, _ in measure("jacobian", model, "init", x=x)}
    assert "half_life" in rows and not any("[" in m for m in rows)
