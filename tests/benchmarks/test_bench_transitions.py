"""Materializing W (forward + backward) for every built-in transition, with its defining property checked."""
import pytest
import torch

from stability import transitions

BUILTIN = [n for n in transitions.available() if transitions.get(n).__module__.startswith("stability.")]
ORTHOGONAL = {"exprnn", "cayley", "householder"}
N = 96


@pytest.mark.benchmark(group=f"materialize W n={N} fwd+bwd")
@pytest.mark.parametrize("name", BUILTIN)
def test_materialize(benchmark, name):
    torch.manual_seed(0)
    t = transitions.create(name, N)
    upstream = torch.randn(N, N)

    def forward_backward():
        t.zero_grad(set_to_none=True)
        w = t.matrix()
        w.backward(upstream)
        return w.detach()

    w = benchmark(forward_backward)
    assert w.shape == (N, N) and torch.isfinite(w).all()
    grads = [p.grad for p in t.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    w64 = w.double()
    if name in ORTHOGONAL:
        assert torch.allclose(w64.T @ w64, torch.eye(N, dtype=torch.float64), atol=1e-4)
    sv = torch.linalg.svdvals(w64)
    assert torch.allclose(torch.sort(t.singular_values().detach().double(), descending=True).values,
                          sv, atol=1e-4)
