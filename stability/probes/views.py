"""How a probe gets a model's steps, picks its path, and labels its frame per view.

- :func:`model_views`: ``model.step_views(x, h0)`` when the model has it; otherwise a model
  with the closed-form duck contract of :mod:`stability.probes.inputs`
  (``.transition.matrix()``, ``.activation_derivative(hidden_states)``, ``model(x, h0)``)
  becomes one closed-form view without a usable step; any other model is a one-line TypeError.
- :func:`linearize`: the view's operator for ``path`` (:mod:`stability.probes.operators`):
  ``"auto"`` takes the closed form where the view has one, ``"closed"`` insists on it,
  ``"general"`` differentiates ``view.step``.
- :func:`label_views`: one frame per view into the probe's frame. A single view's frame is the
  probe's frame, columns untouched; several views' (a bidirectional model: ``"forward"``,
  ``"backward"``) are stacked with a ``direction`` column (the view's name) in front. Either
  way ``df.attrs`` gets ``path`` and ``state`` (:meth:`StepView.describe`), for several views
  ``"forward: …; backward: …"`` unless all views agree, and ``directions`` (their names).
- :func:`select_direction` / :func:`per_direction`: read one direction back out of such a frame
  (default: the first view's).
"""
from __future__ import annotations

from typing import Iterator

import pandas as pd
import torch
from torch import Tensor

from .inputs import check_sequence, trajectory
from .operators import ClosedSteps, GeneralSteps
from .steps import StepView, no_step

__all__ = ["PATHS", "model_views", "closed_view", "has_closed_contract", "linearize", "label_views",
           "select_direction", "per_direction"]

#: how a probe takes its products with the one-step Jacobians
PATHS = ("auto", "closed", "general")
DUCK = (".transition.matrix()", ".activation_derivative(hidden_states)")


def check_path(path: str) -> str:
    if path not in PATHS:
        raise ValueError(f"path={path!r} is not known; allowed: {', '.join(map(repr, PATHS))}")
    return path


def model_views(model, x: Tensor, h0: Tensor | None = None, name: str = "model") -> list[StepView]:
    """The model's :class:`StepView` list for inputs x (see the module docstring)."""
    check_sequence(x)
    get = getattr(model, "step_views", None)
    if callable(get):
        views = get(x, h0)
        if not (isinstance(views, (list, tuple)) and views and all(isinstance(v, StepView) for v in views)):
            raise TypeError(f"{name}.step_views(x, h0) must return a non-empty list of StepView, got {views!r:.80}")
        return list(views)
    transition = getattr(model, "transition", None)
    has = [callable(getattr(transition, "matrix", None)), callable(getattr(model, "activation_derivative", None))]
    if not all(has) or not callable(model):
        missing = [m for m, ok in zip(DUCK, has) if not ok] + ([] if callable(model) else ["__call__"])
        raise TypeError(f"{name} must be a recurrent model that exposes its steps (a probe asked of a model "
                        f"that exposes no step): .step_views(x, h0), or the closed form {', '.join(DUCK)} "
                        f"and model(x, h0) -> (outputs, hidden_states); {type(model).__name__} lacks "
                        f"{', '.join(missing + ['.step_views(x, h0)'])}")
    w, states, deriv = trajectory(model, x, h0)
    return [closed_view(w, states, deriv, h0)]


def has_closed_contract(model) -> bool:
    """Whether the model has the closed-form duck contract (``.transition.matrix()``,
    ``.activation_derivative``)."""
    return (callable(getattr(getattr(model, "transition", None), "matrix", None))
            and callable(getattr(model, "activation_derivative", None)))


def closed_view(w: Tensor, states: Tensor, deriv: Tensor, h0: Tensor | None) -> StepView:
    """The one view of a model known by its closed form J_t = diag(deriv_t) W (no usable step)."""
    steps, batch, n = states.shape
    initial = torch.zeros(batch, n, dtype=w.dtype, device=w.device) if h0 is None else h0.detach().to(w.dtype)
    return StepView(name="forward", layout=(("h", n),), step=no_step, inputs=states.new_zeros(steps, batch, 0),
                    initial=initial, states=states, output_gradient=lambda g: g, closed_form=(w, deriv))


def linearize(view: StepView, path: str, dtype: torch.dtype | None = None) -> ClosedSteps | GeneralSteps:
    """The operator for ``view`` on ``path`` (``dtype``: the closed form's compute dtype)."""
    if path == "closed" or (path == "auto" and view.closed_form is not None):
        if view.closed_form is None:
            raise ValueError(f"path='closed' needs a step with the closed form J_t = diag(φ'_t) W; the "
                             f"{view.name!r} view ({view.describe()}) has none; allowed here: 'auto', 'general'")
        w, deriv = view.closed_form
        return ClosedSteps(w.detach(), deriv.detach(), dtype)
    if view.step is no_step:
        raise ValueError(f"path='general' needs the model's step: this model exposes only the closed form "
                         f"({', '.join(DUCK)}); give it .step_views(x, h0) or use path='auto' or 'closed'")
    return GeneralSteps(view)


def label_views(frames: list[pd.DataFrame], views: list[StepView], paths: list[str],
                attrs: dict | None = None) -> pd.DataFrame:
    """The probe's frame from one frame per view (see the module docstring); ``attrs`` added."""
    def joined(values: list[str]) -> str:
        if len(set(values)) == 1:
            return values[0]
        return "; ".join(f"{v.name}: {value}" for v, value in zip(views, values))

    if len(views) == 1:
        df = frames[0]
    else:
        df = pd.concat([f.assign(direction=v.name) for f, v in zip(frames, views)], ignore_index=True)
        df = df[["direction"] + [c for c in df.columns if c != "direction"]]
        df.attrs = {"directions": [v.name for v in views]}
    df.attrs.update(attrs or {})
    df.attrs.update({"path": joined(paths), "state": joined([v.describe() for v in views])})
    return df


def select_direction(df: pd.DataFrame, direction: str | None = None) -> pd.DataFrame:
    """The rows of one direction of a multi-view frame (default: the first); a single-view frame as is."""
    if "direction" not in df.columns:
        if direction is not None:
            raise ValueError(f"direction={direction!r} given but the frame has a single view (no 'direction' column)")
        return df
    names = list(dict.fromkeys(df["direction"]))
    if direction is None:
        direction = names[0]
    elif direction not in names:
        raise ValueError(f"direction={direction!r} is not in the frame; allowed: {', '.join(map(repr, names))}")
    return df[df["direction"] == direction]


def per_direction(df: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """(metric suffix, rows) per view: ``""`` for the first (today's metric names), ``"[name]"`` after."""
    if "direction" not in df.columns:
        yield "", df
        return
    for i, name in enumerate(dict.fromkeys(df["direction"])):
        yield ("" if i == 0 else f"[{name}]"), df[df["direction"] == name]
