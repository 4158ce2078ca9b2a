"""The one interface every recurrent transition parameterization implements, and its registry.

A transition is an ``nn.Module`` that owns its parameters and returns the n×n recurrent
matrix W through :meth:`Transition.matrix`. Everything downstream (the model, the probes,
the tasks, the benchmarks, the reports) sees only this interface, so a parameterization
registered here gets every probe and report for free::

    from stability.transitions import Transition, register

    @register("diagonal")
    class Diagonal(Transition):
        def __init__(self, n):
            super().__init__(n)
            self.d = nn.Parameter(torch.ones(n))
        def matrix(self):
            return torch.diag(self.d)

Other packages register through the entry-point group ``stability.transitions``
(``name = "package.module:Class"``); those are loaded the first time the registry is read.
"""
from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn

from ..checks import check_choice, check_size  # noqa: F401  (re-exported for transition modules and plugins)
from ..registry import Registry

ENTRY_POINT_GROUP = "stability.transitions"


class Transition(nn.Module):
    """Base class: a module whose :meth:`matrix` is the (differentiable) n×n transition W."""

    #: short registry name, set by :func:`register`
    name: str = ""

    def __init__(self, n: int):
        super().__init__()
        self.n = check_size("n", n)

    def matrix(self) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def singular_values(self) -> Tensor:
        """Singular values of W in descending order (exact where the parameterization knows them)."""
        return torch.linalg.svdvals(self.matrix())

    def forward(self) -> Tensor:
        return self.matrix()

    def options(self) -> dict:
        """The options this transition was built with (for logging and result rows)."""
        return {}

    # -- the per-step hook --------------------------------------------------------------
    def after_step(self) -> None:
        """Called after every optimizer step (no-op by default).

        :func:`stability.train.train` calls it on every transition of the model after each
        ``optimizer.step()``; a loop of your own should do the same, e.g. with
        ``stability.optim.after_step(model)`` (also importable from ``stability.train``).
        The Spectral-RNN and Householder transitions use it to re-normalize their reflector
        vectors (``renormalize=True``), which leaves W unchanged.
        """

    def penalty(self) -> Tensor | None:
        """A regularization term the training loop adds to the loss (None by default).

        nnRNN's official protocol penalizes its block magnitudes and its triangular part
        (:class:`~stability.transitions.nonnormal.NonNormalTransition`). The logged training
        loss stays the task's own; the penalty is in the gradient only.
        """
        return None

    def transition_lr_parameters(self) -> list[nn.Parameter]:
        """The parameters that take the training loop's ``transition_lr`` (default: all of them).

        nnRNN gives the slower orthogonal learning rate to P's skew entries only, as its
        official optimizer does; its rotation angles, magnitudes and T take ``lr``.
        """
        return list(self.parameters())

    # -- the inverse of matrix() --------------------------------------------------------
    @classmethod
    def has_inverse(cls) -> bool:
        """True where the transition implements :meth:`inverse` (and so :meth:`from_matrix`, ``init_from``)."""
        return cls.inverse is not Transition.inverse

    def inverse(self, w: Tensor, tol: float | None = None) -> dict[str, Tensor]:
        """Parameter values (keyed as in ``named_parameters()``) whose :meth:`matrix` is ``w``.

        Reads only the transition's options and buffers, never its parameters (so a
        parametrization that removed them can use it). Raises a ValueError saying why when
        ``w`` lies outside what the transition can represent; ``tol`` (default sqrt(eps) of
        w's dtype) is the tolerance of those checks (e.g. orthogonality).
        """
        raise NotImplementedError(f"transition {self.name or type(self).__name__!r} has no inverse "
                                  f"(cannot be set from a matrix); transitions with one: "
                                  f"{', '.join(n for n in available() if get(n).has_inverse())}")

    @torch.no_grad()
    def set_matrix_(self, w: Tensor, tol: float | None = None) -> "Transition":
        """Set the parameters in place so that :meth:`matrix` equals ``w``; return self.

        The options stay as built (band, reflector count, D, ...): a ``w`` they cannot represent
        raises a ValueError, also when the rebuilt matrix misses ``w`` by more than
        ``tol`` · max(1, max|w|) (checked in float64).
        """
        w = check_square(w, self.n, "set_matrix_")
        values = self.inverse(w, tol)
        params = dict(self.named_parameters())
        for name, value in values.items():
            params[name].copy_(value)
        rebuilt = self.matrix().detach().to(torch.float64)
        target = w.detach().to(device=rebuilt.device, dtype=torch.float64)
        err = float((rebuilt - target).abs().max())
        limit = default_tol(params_dtype(self), tol) * max(1.0, float(target.abs().max()))
        if not err <= limit:
            raise ValueError(f"{self.name or type(self).__name__} cannot reproduce this W: max error {err:.3g} > "
                             f"{limit:.3g}{self.unreachable_hint()}")
        return self

    def unreachable_hint(self) -> str:
        """A clause appended to the refusal of a matrix out of reach (e.g. '; use reflectors=n')."""
        return ""

    @classmethod
    def from_matrix(cls, w: Tensor, tol: float | None = None, **options) -> "Transition":
        """A new transition of size w.shape[0], built with ``options``, whose matrix() equals ``w``.

        Parameters in w's dtype and device; ``tol`` as in :meth:`set_matrix_`. Does not draw
        from the global random generator. Raises a ValueError when ``w`` is out of reach.
        """
        if not cls.has_inverse():
            raise TypeError(f"transition {cls.name or cls.__name__!r} has no from_matrix (no inverse)")
        n = check_square(w, None, "from_matrix").shape[0]
        with torch.random.fork_rng(devices=[]):
            t = cls(n, **options)
        return t.to(dtype=w.dtype, device=w.device).set_matrix_(w, tol)

    def start_from(self, init_from: str | None, init_options: dict | None) -> Tensor | None:
        """The initial W of transition ``init_from`` (built with ``init_options`` at this n), or None.

        For constructors: call it after validating the own options and before drawing the own
        random initial values (which should then be drawn inside
        ``torch.random.fork_rng(devices=[], enabled=source is not None)``, so that the global
        generator moves exactly as if ``init_from`` alone had been built), then pass the result
        to :meth:`finish_start`. The resolved options are kept in ``self.init_from`` and
        ``self.init_options`` for :meth:`options`.
        """
        self.init_from, self.init_options = None, None
        if init_options is not None and init_from is None:
            raise ValueError(f"init_options={init_options!r} needs init_from (a transition name)")
        if init_from is None:
            return None
        if not isinstance(init_from, str) or init_from not in available():
            raise ValueError(f"init_from={init_from!r} is not a known transition; allowed: "
                             f"{', '.join(available())}")
        if init_options is not None and not isinstance(init_options, dict):
            raise TypeError(f"init_options must be a dict of {init_from!r}'s options, got {init_options!r}")
        if not self.has_inverse():
            raise TypeError(f"transition {self.name!r} cannot take init_from (it has no inverse)")
        try:
            source = create(init_from, self.n, **(init_options or {}))
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"init_options for init_from={init_from!r}: {exc}") from None
        self.init_from = init_from
        self.init_options = {k: v for k, v in source.options().items()
                             if not (k in ("init_from", "init_options") and v is None)}
        if torch.empty(0).device.type == "meta":  # a shape-only build (parameter counting): no values
            return None
        with torch.no_grad():
            return source.to(torch.float64).matrix().detach()

    def finish_start(self, w: Tensor | None) -> None:
        """Set the parameters from :meth:`start_from`'s matrix (nothing for None or on the meta device)."""
        if w is None or params_device(self).type == "meta":
            return
        try:
            self.set_matrix_(w)
        except ValueError as exc:
            raise ValueError(f"{self.name} ({', '.join(f'{k}={v}' for k, v in self._own_options().items())}) "
                             f"cannot start from the initial W of {self.init_from!r} at n={self.n}: {exc}") from None

    def _own_options(self) -> dict:
        return {k: v for k, v in self.options().items() if k not in ("init_from", "init_options")}

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options().items())
        return f"n={self.n}" + (", " + opts if opts else "")


def _check_transition(name: str, cls) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Transition)):
        raise TypeError(f"@register({name!r}) needs a Transition subclass, got {cls!r}")


#: every transition by name: the built-ins, decorated classes and the entry-point group's plugins
TRANSITIONS: Registry[type[Transition]] = Registry("transition", entry_points=ENTRY_POINT_GROUP,
                                                    check=_check_transition)
register = TRANSITIONS.register
available = TRANSITIONS.available
get = TRANSITIONS.get


def check_square(w, n: int | None, where: str) -> Tensor:
    """Validate a square matrix (of size n if given)."""
    if not isinstance(w, Tensor) or w.dim() != 2 or w.shape[0] != w.shape[1] or (n is not None and w.shape[0] != n):
        want = f"{n}×{n}" if n is not None else "square"
        raise ValueError(f"{where} needs a {want} matrix, got shape {tuple(getattr(w, 'shape', ()))}")
    if not w.is_floating_point():
        raise TypeError(f"{where} needs a floating-point matrix, got {w.dtype}")
    return w


def default_tol(dtype: torch.dtype | None, tol: float | None = None) -> float:
    """``tol`` if given (validated), else sqrt(eps) of ``dtype``."""
    if tol is not None:
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
            raise ValueError(f"tol={tol!r} must be a number > 0")
        return float(tol)
    return torch.finfo(dtype).eps ** 0.5


def params_dtype(module: nn.Module) -> torch.dtype:
    p = next(module.parameters(), None)
    return p.dtype if p is not None else torch.get_default_dtype()


def params_device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def option_names(name: str) -> list[str]:
    """The keyword options a transition's constructor accepts (besides n)."""
    sig = inspect.signature(get(name).__init__)
    return [p for p in sig.parameters if p not in ("self", "n")
            and sig.parameters[p].kind in (inspect.Parameter.KEYWORD_ONLY,
                                           inspect.Parameter.POSITIONAL_OR_KEYWORD)]


def option_defaults(name: str) -> dict:
    """The options of a transition with their default values."""
    sig = inspect.signature(get(name).__init__)
    return {p: sig.parameters[p].default for p in option_names(name)}


def create(name: str, n: int, **options) -> Transition:
    """Build the transition registered under ``name`` for hidden size ``n``.

    Unknown options raise a TypeError listing the accepted ones.
    """
    cls = get(name)
    allowed = option_names(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"transition {name!r} does not take option(s) {', '.join(unknown)}; "
                        f"allowed: {', '.join(allowed) or '(none)'}")
    return cls(n, **options)
