"""RunConfig: the one declared shape of a run's configuration.

Every writer of a run config uses this type (the suite runner, ``stability probe``, the
report's demo data, the tests) and the report reads its attributes; the layout is described
in ``docs/contracts.md``. A run's id is the hash of its hashed fields (everything but
:data:`UNHASHED`), so rerunning a suite skips what a store already holds, and changing a
paper figure or a task's descriptive definition never invalidates stored runs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

#: what a run is: a probe at initialization, or a task trained then measured
KINDS = ("probe", "task")
#: comparison regimes: equal hidden size, or equal parameter count (hidden size solved per transition)
MATCHES = ("hidden", "params")
#: fields carried but not hashed into the id (reference figures, and descriptions derived from hashed fields)
UNHASHED = ("paper", "definition")


@dataclass(frozen=True)
class RunConfig:
    """One point of a suite's grid, fully resolved (every default filled in)."""

    suite: str                      # the suite's name ("" for a one-off `stability probe`)
    kind: str                       # "probe" | "task"
    name: str                       # the probe's or the task's registry name
    transition: str                 # the transition's registry name, or a gated cell ("lstm", "gru")
    transition_options: dict        # its resolved options (defaults included)
    hidden_size: int
    nonlinearity: str               # of a transition's RecurrentNet ("tanh" for a gated cell: its own)
    options: dict                   # the probe's options (inputs included) or the task's resolved options
    train: dict                     # resolved training options ({} for a probe)
    seed: int
    device: str                     # resolved: "cpu", "cuda", "cuda:N"
    dtype: str                      # "float32" | "float64"
    match: str = "hidden"           # comparison regime (MATCHES)
    budget: int | None = None       # the parameter budget with match = "params"
    measure: dict | None = None     # task runs: {"probes": [names], "batch": B}, at init and after training
    model: dict = field(default_factory=dict)        # model options given (input_init, layers, readout, ...)
    definition: dict = field(default_factory=dict)   # the task's definition() (baseline, thresholds, protocol)
    paper: dict = field(default_factory=dict)        # figures reported by the paper, for comparison

    # -- JSON --------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The plain-JSON form stored with every run (``measure``/``definition`` only for tasks,
        ``paper`` and ``model`` only when given)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in ("measure", "definition", "paper", "model")}
        if self.model:  # absent when every model option is at its default (the ids of older runs hold)
            out["model"] = self.model
        if self.kind == "task":
            out["measure"] = self.measure if self.measure is not None else {"probes": [], "batch": 8}
            out["definition"] = self.definition
        if self.paper:
            out["paper"] = self.paper
        return json.loads(json.dumps(out))  # deep copy, and proof that it is plain JSON

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "RunConfig":
        """The config of a stored run; unknown or missing fields are refused, naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"a run config must be a JSON object, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"run config has unknown field(s) {', '.join(unknown)}; fields: {', '.join(names)}")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [k for k in required if k not in data]
        if missing:
            raise ValueError(f"run config lacks field(s) {', '.join(missing)}")
        cfg = cls(**{k: v for k, v in data.items()})
        if cfg.kind not in KINDS:
            raise ValueError(f"run config kind = {cfg.kind!r}; allowed: {', '.join(KINDS)}")
        if cfg.match not in MATCHES:
            raise ValueError(f"run config match = {cfg.match!r}; allowed: {', '.join(MATCHES)}")
        return cfg

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls.from_dict(json.loads(text))

    # -- identity ----------------------------------------------------------------------
    @property
    def id(self) -> str:
        """The stable id: a hash of the hashed fields."""
        return config_id(self.to_dict())


class Definition(dict):
    """A task's ``definition()`` as stored in a run config, with the facts the report reads."""

    @property
    def baseline(self) -> float | None:
        """The loss of the best memoryless answer, in :attr:`baseline_metric`; None where there is none."""
        return _number(self.get("baseline"))

    @property
    def baseline_metric(self) -> str | None:
        return self.get("baseline_metric")

    @property
    def chance_accuracy(self) -> float | None:
        return _number(self.get("chance_accuracy"))

    @property
    def thresholds(self) -> list[dict]:
        """Levels a learning curve is timed to: ``[{"metric", "value", "relative"}]`` (relative:
        a fraction of the baseline)."""
        return list(self.get("thresholds") or [])

    @property
    def note(self) -> str | None:
        """A caveat about the protocol a run followed (e.g. PTB trained on the validation file)."""
        return self.get("note")


def _number(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def config_id(config: dict) -> str:
    """The stable id of a config dict: sha256 of its hashed fields as canonical JSON, 16 hex digits."""
    hashed = {k: v for k, v in config.items() if k not in UNHASHED}
    text = json.dumps(hashed, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def config_of(config: Any) -> RunConfig:
    """A RunConfig from a RunConfig, a dict or JSON text."""
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, str):
        return RunConfig.from_json(config)
    return RunConfig.from_dict(config)
