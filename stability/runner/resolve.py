"""Names resolved and options checked: each transition, task and probe is built or tried once.

A :class:`Resolver` turns what a suite (or ``stability probe``) gives into resolved options
(every default filled in, ints coerced to float where the default is a float so ``1`` and
``1.0`` give one run id), refusing bad input with a :class:`~.spec.SuiteError` that names the
file and the key before anything runs.
"""
from __future__ import annotations

import inspect
import json
import math
import os
from pathlib import Path

import torch

from .. import probes, sizing, tasks, transitions
from ..checks import READOUTS, check_finite_options, did_you_mean
from ..gated import GATED_CELLS, GATED_ENGINES
from ..model import INPUT_INITS
from ..network import available as network_names, create_network, is_gated
from ..recurrence import ENGINES
from ..tasks.pixels import MNIST_ENV
from ..tasks.ptb import PTB_ENV
from ..train import OPTIMIZERS, check_lr_decay, train
from .spec import SuiteError, _unknown_key

#: data sets a task may read from a directory: name -> (CLI option, environment variable)
DATA_SOURCES = {"ptb": ("--ptb-dir", PTB_ENV), "mnist": ("--mnist-dir", MNIST_ENV)}
#: model options a suite may set in ``model = {...}`` (the rest of the model is in the config's own fields);
#: ``sequence_length`` (for ``readout = "all"``) is filled in by the runner from the task
MODEL_OPTIONS = ("input_init", "engine", "layers", "bidirectional", "readout")
#: model options of a transition's RecurrentNet that a gated cell does not have (left out of its runs)
RECURRENT_ONLY = ("input_init",)
#: the values each model option may take
MODEL_CHOICES = {"input_init": INPUT_INITS, "engine": tuple(dict.fromkeys(ENGINES + GATED_ENGINES)),
                 "bidirectional": (False, True), "readout": READOUTS}
#: train() arguments that are not training options of a run config
TRAIN_NOT_CONFIG = ("model", "task", "seed", "progress", "callback")


def data_needed(task: str, options: dict) -> str | None:
    """Which data directory (a DATA_SOURCES key) a task with these options reads, if any."""
    if task in ("ptb", "ptb_char"):
        return "ptb"
    if task == "pixels" and options.get("source") == "mnist":
        return "mnist"
    return None


def data_dirs(ptb_dir=None, mnist_dir=None) -> dict[str, str]:
    """The data directories given (else from their environment variables), each checked to exist."""
    dirs = {}
    for key, given in (("ptb", ptb_dir), ("mnist", mnist_dir)):
        flag, env = DATA_SOURCES[key]
        value = given if given is not None else (os.environ.get(env) or None)
        if value is not None:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise SuiteError(f"{key.upper()} directory {str(path)!r} does not exist (from {flag} or ${env})")
            dirs[key] = str(path)
    return dirs


def plain_json(value, origin: str = "", where: str = ""):
    """Plain JSON types (numpy scalars, tuples and tensors converted); anything else refused."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [plain_json(v, origin, where) for v in value]
    if isinstance(value, dict):
        return {str(k): plain_json(v, origin, f"{where}.{k}") for k, v in value.items()}
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy / torch scalars and arrays
        return plain_json(value.tolist(), origin, where)
    raise SuiteError(f"{origin}: {where} = {value!r}: a value of type {type(value).__name__} "
                     "cannot be stored; use a number, string, boolean or list")


def plain_defaults(params: dict) -> dict:
    """The defaults that are plain JSON values (others are left out of configs)."""
    out = {}
    for k, v in params.items():
        if v is inspect.Parameter.empty:
            continue
        try:
            out[k] = plain_json(v)
        except SuiteError:
            continue
    return out


def coerce_like(value, default):
    """An int where the default is a float becomes a float (so 1 and 1.0 give one run id)."""
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def train_signature() -> dict:
    """Training option → default (from stability.train.train's signature)."""
    sig = inspect.signature(train)
    return {k: p.default for k, p in sig.parameters.items()
            if k not in TRAIN_NOT_CONFIG and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _finite(origin: str, where: str, options: dict) -> None:
    try:
        check_finite_options(where, options)
    except ValueError as exc:
        raise SuiteError(f"{origin}: {exc}") from None


class Resolver:
    """Builds each transition and task once (validating them) and caches what it learned."""

    def __init__(self, origin: str):
        self.origin = origin
        self._transitions: dict[str, dict] = {}
        self._tasks: dict[str, tuple] = {}
        self._sizes: dict[str, int] = {}
        self._probes: set[str] = set()
        self._models: set[str] = set()
        self._refusals: dict[str, str | None] = {}

    # transitions -------------------------------------------------------------------
    def transition_options(self, name: str, given: dict, where: str) -> dict:
        """Check names and value types (finite numbers); ints coerced to float where the default is a float."""
        if is_gated(name):
            if given:
                raise SuiteError(f"{self.origin}: {where}.options: {name!r} is a gated cell and takes no transition "
                                 f"options (got {', '.join(given)}); its options go in model = {{...}}: "
                                 f"layers, bidirectional, readout, engine")
            return {}
        if name not in transitions.available():
            raise SuiteError(f"{self.origin}: {where}.name = {name!r} is not a known transition or cell"
                             f"{did_you_mean(name, network_names())}; available: "
                             f"{', '.join(transitions.available())}; gated cells: {', '.join(GATED_CELLS)}")
        allowed = transitions.option_names(name)
        defaults = transitions.option_defaults(name)
        out = {}
        for k, v in given.items():
            if k not in allowed:
                raise _unknown_key(self.origin, f"{where}.options (transition {name!r})", k, allowed)
            out[k] = coerce_like(plain_json(v, self.origin, f"{where}.options.{k}"), defaults.get(k))
        _finite(self.origin, f"{where}.options", out)
        return out

    def transition(self, name: str, options: dict, n: int, where: str) -> dict:
        """Build the transition once (validating options at size n); its resolved options."""
        if is_gated(name):
            return {}  # checked with its model options (row_model)
        key = json.dumps([name, options, n], sort_keys=True)
        if key not in self._transitions:
            try:
                with torch.random.fork_rng(devices=[]):
                    t = transitions.create(name, n, **options)
            except (TypeError, ValueError) as exc:
                opts = ", ".join(f"{k} = {v!r}" for k, v in options.items()) or "defaults"
                raise SuiteError(f"{self.origin}: {where}: transition {name!r} ({opts}) at hidden_size {n} "
                                 f"is refused: {exc}") from None
            resolved = {**plain_defaults(transitions.option_defaults(name)), **options}
            resolved.update(plain_json(t.options() or {}))
            self._transitions[key] = resolved
        return dict(self._transitions[key])

    def hidden_for_budget(self, name: str, options: dict, budget: int, input_size: int, output_size: int,
                          where: str) -> int:
        key = json.dumps([name, options, budget, input_size, output_size], sort_keys=True)
        if key not in self._sizes:
            try:
                n = sizing.hidden_for_budget(name, budget, input_size, output_size, **options)
            except (TypeError, ValueError) as exc:
                raise SuiteError(f"{self.origin}: {where}: no hidden size of {name!r} fits "
                                 f"budget = {budget}: {exc}") from None
            self._sizes[key] = int(n)
        return self._sizes[key]

    # probes --------------------------------------------------------------------------
    def probe_options(self, name: str, options: dict, where: str) -> dict:
        """A probe experiment's options: its input options (with defaults) + the probe's own."""
        probe = probes.get_probe(name)
        inputs = probe.input_options()
        out = {}
        for k, default in inputs.items():
            v = options.get(k, default)
            if k == "input_scale":
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not (v >= 0 and math.isfinite(v)):
                    raise SuiteError(f"{self.origin}: {where}.options.{k} = {v!r} must be a finite number >= 0")
                v = float(v)
            elif isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SuiteError(f"{self.origin}: {where}.options.{k} = {v!r} must be a positive integer")
            out[k] = v
        extra = {k: v for k, v in options.items() if k not in inputs}
        allowed = probe.options()
        for k in extra:
            if k not in allowed:
                raise _unknown_key(self.origin, f"{where}.options (probe {name!r})", k, list(inputs) + list(allowed))
        extra = plain_json(extra, self.origin, f"{where}.options")
        _finite(self.origin, f"{where}.options", extra)
        out.update(extra)
        return out

    def try_probe(self, name: str, options: dict, n: int | None, nonlinearity: str, where: str,
                  network: str = "dense", model: dict | None = None) -> None:
        """Run probe ``name`` with its options once on a ``network`` model (default dense; hidden size n, or 4),
        one sequence of zeros: a setting the probe refuses (T too short, a bad option, a model it cannot
        measure) is refused before anything runs."""
        probe = probes.get_probe(name)
        extra = {k: v for k, v in options.items() if k not in probe.input_options()}
        model = dict(model or {})
        if not is_gated(network):
            model["nonlinearity"] = nonlinearity
        key = json.dumps([name, options, n, network, model], sort_keys=True)
        if key in self._probes:
            return
        T, isz = options.get("T", 2), options["input_size"]  # T as asked: options may depend on it
        try:
            with torch.random.fork_rng(devices=[]):
                model = create_network(isz, n or 4, 1, network, **model)
                x = torch.zeros(T, 1, isz)
                supplied = {"x": x, "loss_fn": last_step_mse, "y": torch.zeros(1, 1)}
                probes.measure(name, model, "init", options=extra,
                               **{k: v for k, v in supplied.items() if k in probe.inputs})
        except (TypeError, ValueError) as exc:
            opts = ", ".join(f"{k} = {v!r}" for k, v in options.items())
            what = "" if network == "dense" else f" of {network!r}"
            raise SuiteError(f"{self.origin}: {where}: probe {name!r} refuses {opts}"
                             f"{f' at hidden_size {n}' if n else ''}{what}: {exc}") from None
        self._probes.add(key)

    # tasks ---------------------------------------------------------------------------
    def task_name(self, name: str, where: str) -> str:
        """``name`` if it is a registered task; a SuiteError with a "did you mean" otherwise."""
        if name not in tasks.available():
            raise SuiteError(f"{self.origin}: {where}.task = {name!r} is not a known task"
                             f"{did_you_mean(name, tasks.available())}; available: {', '.join(tasks.available())}")
        return name

    def task(self, name: str, options: dict, data_dir: str | None, where: str):
        """(task, resolved options, definition) for a task built once with its options."""
        key = json.dumps([name, options, data_dir], sort_keys=True)
        if key not in self._tasks:
            self.task_name(name, where)
            allowed = [k for k in tasks.option_names(name) if k != "data_dir"]
            for k in options:
                if k not in allowed:
                    raise _unknown_key(self.origin, f"{where}.options (task {name!r})", k, allowed)
            _finite(self.origin, f"{where}.options", options)
            kwargs = dict(options)
            if data_dir is not None:
                kwargs["data_dir"] = data_dir
            try:
                with torch.random.fork_rng(devices=[]):
                    task = tasks.create(name, **kwargs)
            except FileNotFoundError as exc:
                raise SuiteError(f"{self.origin}: {where}: task {name!r} cannot find its data: {exc}") from None
            except (TypeError, ValueError, KeyError) as exc:
                opts = ", ".join(f"{k} = {v!r}" for k, v in options.items()) or "defaults"
                raise SuiteError(f"{self.origin}: {where}.options: task {name!r} ({opts}) is refused: "
                                 f"{exc}") from None
            defaults = plain_defaults({k: v for k, v in tasks.option_defaults(name).items() if k != "data_dir"})
            resolved = {**defaults, **{k: coerce_like(v, defaults.get(k)) for k, v in options.items()}}
            definition = plain_json({k: v for k, v in task.definition().items() if k not in ("data_dir", "path")},
                                    self.origin, f"{where}: task {name!r} definition()")
            self._tasks[key] = (task, resolved, definition)
        return self._tasks[key]

    def model_options(self, where: str, given: dict) -> dict:
        """Model options (``input_init``, ``engine``, ``layers``, ``bidirectional``, ``readout``), their names
        and values checked; each row's are checked on its own model by :meth:`row_model`. Only those given
        are recorded (a config without them keeps the id it always had)."""
        allowed = [k for k in MODEL_OPTIONS]
        for k in given:
            if k not in allowed:
                raise _unknown_key(self.origin, f"{where}.model", k, allowed)
        out = plain_json(given, self.origin, f"{where}.model")
        for k, v in out.items():
            if k == "layers":
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise SuiteError(f"{self.origin}: {where}.model.layers = {v!r} must be an integer >= 1")
            elif v not in MODEL_CHOICES[k] or (k == "bidirectional") != isinstance(v, bool):
                raise SuiteError(f"{self.origin}: {where}.model.{k} = {v!r}; allowed: "
                                 f"{', '.join(map(repr, MODEL_CHOICES[k]))}")
        return out

    def row_model(self, name: str, given: dict, where: str, notes: list[str], *, task=None,
                  sequence_length: int | None = None) -> dict:
        """The model options one row records: those that apply to ``name`` (a gated cell leaves out
        ``input_init``, with a note; a transition refuses ``layers`` > 1), ``sequence_length`` filled
        in for ``readout = "all"`` (refused with a task that reads every step's output), checked by
        building the model once."""
        out = dict(given)
        if is_gated(name):
            for k in RECURRENT_ONLY:
                if k in out:
                    notes.append(f"{where}: model.{k} = {out.pop(k)!r} does not apply to the gated cell {name!r} "
                                 f"(PyTorch's own initialization): left out of its runs")
        elif out.get("layers", 1) != 1:
            raise SuiteError(f"{self.origin}: {where}.model.layers = {out['layers']}: the transition {name!r} "
                             f"has one layer; allowed: layers = 1 (stacked layers: {', '.join(GATED_CELLS)})")
        else:
            out.pop("layers", None)
        if out.get("readout") == "all":
            if task is not None and getattr(task, "output_steps", "every") != "last":
                last = [t for t in tasks.available() if getattr(tasks.get(t), "output_steps", "every") == "last"]
                raise SuiteError(f"{self.origin}: {where}: model.readout = 'all' gives one output per sequence, but "
                                 f"task {task.name!r} reads every step's output; allowed with readout = 'all': "
                                 f"{', '.join(last)}")
            out["sequence_length"] = int(sequence_length if task is None else task_sequence_length(task))
        key = json.dumps([name, out], sort_keys=True)
        if key not in self._models:
            try:
                with torch.random.fork_rng(devices=[]):
                    create_network(2, 2, 2, name, **out)
            except (TypeError, ValueError) as exc:
                raise SuiteError(f"{self.origin}: {where}.model ({name!r}): {exc}") from None
            self._models.add(key)
        return out

    def probe_refusal(self, probe: str, name: str, model: dict, task, key: str) -> str | None:
        """Why ``probe`` cannot measure a small ``name`` model on one batch of ``task`` (None: it can)."""
        cache = json.dumps([probe, name, model, key], sort_keys=True)
        if cache not in self._refusals:
            spec = probes.get_probe(probe)
            try:
                with torch.random.fork_rng(devices=[]):
                    net = create_network(int(task.input_size), 3, int(task.output_size), name, **model)
                    x, y = task.sample(2, torch.Generator().manual_seed(0))
                    if x.is_floating_point():
                        x = x.to(next(net.parameters()).dtype)
                    supplied = {"x": x, "loss_fn": task.loss, "y": y}
                    probes.measure(probe, net, "init", **{k: v for k, v in supplied.items() if k in spec.inputs})
                self._refusals[cache] = None
            except (TypeError, ValueError, NotImplementedError) as exc:
                self._refusals[cache] = str(exc)
        return self._refusals[cache]

    def train_options(self, where: str, given: dict, signature: dict) -> dict:
        """A task run's training options, resolved and checked."""
        origin = self.origin
        out = {**plain_defaults(signature), **plain_json(given, origin, f"{where}.train")}
        for key in ("steps", "batch_size", "eval_every", "eval_batches"):
            v = out.get(key)
            if v is None and key != "steps":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "eval_every" else 1):
                raise SuiteError(f"{origin}: {where}.train.{key} = {v!r} must be a positive integer")
        for key in ("lr", "transition_lr"):
            v = out.get(key)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or not math.isfinite(v):
                raise SuiteError(f"{origin}: {where}.train.{key} = {v!r} must be a number > 0")
            out[key] = float(v)
        clip = out.get("clip")
        if clip is not None and clip is not False:
            if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not (clip >= 0 and math.isfinite(clip)):
                raise SuiteError(f"{origin}: {where}.train.clip = {clip!r} must be a finite number >= 0 "
                                 "(0: no clipping)")
            out["clip"] = float(clip)
        opt = out.get("optimizer")
        if opt is not None and (not isinstance(opt, str) or opt not in OPTIMIZERS):
            raise SuiteError(f"{origin}: {where}.train.optimizer = {opt!r}; allowed: {', '.join(OPTIMIZERS)}")
        self.check_decay(where, out)
        _finite(origin, f"{where}.train", out)
        return out

    def check_decay(self, where: str, train: dict, task=None) -> None:
        """The learning-rate decay of resolved training options (``decay_every="epoch"`` against ``task``)."""
        try:
            check_lr_decay(train.get("lr_decay"), train.get("decay_every", "epoch"), task, train.get("batch_size"))
        except (TypeError, ValueError) as exc:
            raise SuiteError(f"{self.origin}: {where}.train: {exc}") from None


def task_sequence_length(task) -> int:
    """T of the task's sequences: its ``sequence_length`` attribute, else the length of one sampled batch."""
    given = getattr(task, "sequence_length", None)
    if given is not None:
        return int(given)
    with torch.random.fork_rng(devices=[]):
        x, _ = task.sample(1, torch.Generator().manual_seed(0))
    return int(x.shape[0])


def last_step_mse(outputs, y):
    """The loss a probe at init is measured with: MSE of the last step's output against ``y``."""
    return torch.nn.functional.mse_loss(outputs[-1], y)
