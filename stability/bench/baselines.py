"""What a stability transition's training step is compared with in figure (b): ``torch.nn.RNN``
(dense W, the floor) and what users would write instead of this package, ``torch.nn.RNN`` with
its recurrent weight ``weight_hh_l0`` kept orthogonal by

- ``torch.nn.utils.parametrizations.orthogonal`` with ``orthogonal_map`` "matrix_exp",
  "cayley" or "householder" (``torch-orthogonal-<map>``), or
- geotorch's ``geotorch.orthogonal`` (``geotorch``; the ``bench`` extra installs it).

Both are used as users would write them: no ``parametrize.cached()``, so ``nn.RNN``'s forward
evaluates the parametrization as often as it reads its weights (4 times per forward in torch
2.13, one of them in the graph). suites/asv/common.py keeps its own copy of these builders,
because asv runs today's benchmarks against old commits of this package.
"""
from __future__ import annotations

from torch import nn

TORCH_RNN = "torch.nn.RNN"
TORCH_ORTHOGONAL_MAPS = ("matrix_exp", "cayley", "householder")
ALTERNATIVES = tuple(f"torch-orthogonal-{m}" for m in TORCH_ORTHOGONAL_MAPS) + ("geotorch",)
#: the package an alternative needs beyond torch, and how to install it
EXTRAS = {"geotorch": "geotorch (pip install \"stability[bench]\")"}


class TorchRNN(nn.Module):
    """``torch.nn.RNN`` (tanh, dense W) with the same readout as RecurrentNet: the floor."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int):
        super().__init__()
        self.rnn = nn.RNN(input_size, hidden_size)
        self.readout = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        states, _ = self.rnn(x)
        return self.readout(states), states


def check_alternatives(names) -> list[str]:
    """The names as a list; ValueError naming the unknown ones and the allowed ones."""
    names = list(names)
    unknown = [n for n in names if n not in ALTERNATIVES]
    if unknown:
        raise ValueError(f"unknown alternative {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(ALTERNATIVES)}")
    return names


def parse_alternatives(spec: str) -> list[str]:
    """``--alternatives``: "all", "none" or a comma list of ALTERNATIVES (ValueError otherwise)."""
    spec = spec.strip()
    if spec in ("all", "none"):
        return list(ALTERNATIVES) if spec == "all" else []
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if not names:
        raise ValueError(f"none given; allowed: all, none, or a comma list of {', '.join(ALTERNATIVES)}")
    return check_alternatives(names)


def missing_package(name: str) -> str | None:
    """None when alternative ``name`` can be built here, else what to install (one line)."""
    if name not in EXTRAS:
        return None
    try:
        import geotorch  # noqa: F401  (only whether it imports)
    except ImportError:
        return EXTRAS[name]
    return None


def alternative_model(name: str, input_size: int, hidden_size: int, output_size: int) -> TorchRNN:
    """A :class:`TorchRNN` whose ``rnn.weight_hh_l0`` is parametrized as alternative ``name``
    (ImportError naming the extra when its package is missing)."""
    check_alternatives([name])
    model = TorchRNN(input_size, hidden_size, output_size)
    if name == "geotorch":
        missing = missing_package(name)
        if missing:
            raise ImportError(f"the geotorch alternative needs {missing}")
        import geotorch

        geotorch.orthogonal(model.rnn, "weight_hh_l0")
    else:
        from torch.nn.utils.parametrizations import orthogonal

        orthogonal(model.rnn, "weight_hh_l0", orthogonal_map=name.removeprefix("torch-orthogonal-"))
    return model


def orthogonality_error(model: TorchRNN) -> float:
    """max |WᵀW − I| of the recurrent weight, in float64."""
    w = model.rnn.weight_hh_l0.detach().double()
    eye = w.new_ones(w.shape[0]).diag()
    return float((w.T @ w - eye).abs().max())
