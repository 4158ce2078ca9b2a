"""stability: gradient-stability analysis and benchmarking of recurrent transition parameterizations.

The public API, small enough to read in a minute:

- ``stability.transitions``: ``create(name, n, **options)``, ``available()``, ``register(name)``,
  the :class:`Transition` interface and the built-ins (dense, exprnn, cayley, householder, spectral, nnrnn).
- :class:`RecurrentNet`: input map + transition + readout, W built once per forward.
- :class:`GatedNet`: the LSTM and GRU baselines on PyTorch's kernels; ``create_network(I, n, O, name)``
  builds either from a transition's or a cell's name.
- ``stability.probes``: Jacobian norm decay, gradient flow, Lyapunov spectrum, spectrum tracking.
- ``stability.tasks``: copy, adding, PTB (word and char), pixel digits; ``stability.train.train``.
- ``stability.suite`` / ``stability.store`` / ``stability.report``: run grids, keep results, report.
"""
from . import transitions
from .gated import GatedNet
from .model import RecurrentNet
from .network import create_network
from .transitions import Transition, householder_product, register

__version__ = "0.1.0"

__all__ = ["GatedNet", "RecurrentNet", "create_network", "Transition", "householder_product", "register", "transitions", "__version__"]
