"""Suites: a TOML spec, expanded into a grid of runs, run (resumably) into a results store.

A suite spec (``suites/*.toml``) names transitions with option grids and experiments
(probes at init, or training tasks); the runner expands transition × options × experiment ×
options × seed into runs. Every run has a resolved config (the shape is in
``docs/contracts.md``) and a stable id: a hash of that config, so rerunning a suite skips
what a store already holds. The spec, in brief::

    name = "mine"                 # required
    description = "..."
    seeds = [0, 1]                # default [0]
    device = "auto"               # auto | cpu | cuda | cuda:N (the CLI's --device wins)
    dtype = "float32"             # float32 | float64
    hidden_size = 64              # default for every experiment (a list is a grid axis)
    nonlinearity = "tanh"
    threads = 1                   # torch threads per run (not part of the config; --threads wins)
    workers = 2                   # parallel runs when --workers is not given (at most the cores)
    train = { lr = 1e-3 }         # defaults for every task's training options (stability.train.train)

    [[transition]]
    name = "spectral"                                    # a registered transition
    label = "spectral-grid"                              # optional, unique: experiments pick by label
    options = { reflectors = [8, 32], margin = [0.01, 0.1] }   # lists are grid axes

    [[experiment]]
    probe = "jacobian"                                   # either probe = NAME ...
    options = { T = 200, batch = 8 }

    [[experiment]]
    task = "copy"                                        # ... or task = NAME
    options = { T = 100 }
    train = { steps = 300, batch_size = 32 }
    transitions = ["dense", "spectral"]                  # labels; default: every transition
    match = "params"                                     # or "hidden" (the default)
    budget = 20000                                       # parameters, with match = "params"
    paper = { accuracy = 0.977 }                         # reported figures (or per transition:
                                                         #   paper = { spectral = { accuracy = 0.977 } })
    measure = ["jacobian", "spectrum"]                   # probes at init and after training (default)
    # also per experiment: hidden_size, seeds, nonlinearity, measure_batch (default 8)

Every list in ``options``, ``train``, ``hidden_size``, ``budget``, ``seeds`` is a grid axis (to
pass a list as one value, wrap it: ``gaps = [[1, 10, 100]]``). Bad input (TOML syntax, an
unknown key, an unknown name, an option of the wrong type or range) is refused by
:func:`load_suite` with a :class:`SuiteError` naming the file and the key, before anything
runs: every transition is built once with its options, every task once with its options, and
a probe's own options are tried once on a small model.

The config of a task run also carries ``measure``, ``definition`` (the task's, e.g. its
baseline) and, where given, ``paper``; ``definition`` and ``paper`` are not hashed into the id
(see UNHASHED), nor is where data is read from (``--ptb-dir``, ``--mnist-dir``: the run's
``runtime``, recorded in the store's env column).

Runs are executed by :func:`execute_run` (a plain top-level function, so any
``concurrent.futures.Executor`` can run it: a local process pool, or a dask cluster's
executor); it returns the metric rows, and only the parent process writes the store, one
transaction per finished run, so a killed process leaves every finished run intact.
Each run seeds Python, NumPy and torch from its seed, under a process-wide lock, so the same
seed and device give the same numbers whichever executor runs it.
"""
from __future__ import annotations

import concurrent.futures as cf
import difflib
import fnmatch
import hashlib
import inspect
import itertools
import json
import math
import multiprocessing
import os
import random
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "Run", "Suite", "SuiteError", "RunSummary", "load_suite", "parse_suite", "shipped_suites",
    "suite_source", "run_id", "execute_run", "run_suite", "resolve_device", "PTB_ENV",
]

#: environment variable naming the PTB data directory (``--ptb-dir`` wins)
PTB_ENV = "STABILITY_PTB_DIR"

#: environment variable naming the MNIST directory (``--mnist-dir`` wins)
MNIST_ENV = "STABILITY_MNIST_DIR"
#: data sets a task may read from a directory: name -> (CLI option, environment variable)
DATA_SOURCES = {"ptb": ("--ptb-dir", PTB_ENV), "mnist": ("--mnist-dir", MNIST_ENV)}


def data_needed(task: str, options: dict) -> str | None:
    """Which data directory (a DATA_SOURCES key) a task with these options reads, if any."""
    if task in ("ptb", "ptb_char"):
        return "ptb"
    if task == "pixels" and options.get("source") == "mnist":
        return "mnist"
    return None

#: config keys that are carried but not hashed into the run id (reference figures and
#: metadata derived from the hashed keys; changing them must not invalidate stored runs)
UNHASHED = ("paper", "definition")

SUITE_KEYS = ("name", "description", "seeds", "device", "dtype", "hidden_size", "nonlinearity",
              "threads", "workers", "train", "transition", "experiment")
TRANSITION_KEYS = ("name", "label", "options")
EXPERIMENT_KEYS = ("probe", "task", "options", "train", "hidden_size", "match", "budget", "seeds",
                   "nonlinearity", "transitions", "paper", "measure", "measure_batch")
DTYPES = ("float32", "float64")
NONLINEARITIES = ("tanh", "relu")
MATCHES = ("hidden", "params")

#: options a probe experiment's runner reads itself (the rest go to the probe function)
PROBE_INPUT_OPTIONS = {"T": 100, "batch": 8, "input_size": 8, "input_scale": 1.0}
#: what a task run measures at init and after training (split init / final)
DEFAULT_MEASURE = ("jacobian", "spectrum")
DEFAULT_MEASURE_BATCH = 8
#: runs of at least this many training steps show their own progress bar (with --workers 1)
LONG_RUN_STEPS = 200
#: training options, in case stability.train cannot be inspected
TRAIN_KEYS_FALLBACK = ("steps", "batch_size", "optimizer", "lr", "transition_lr", "clip",
                       "eval_every", "eval_batches", "probes")
TRAIN_NOT_CONFIG = ("model", "task", "seed", "progress", "callback")

_RUN_LOCK = threading.RLock()


class SuiteError(ValueError):
    """A suite spec that cannot be run; the message names the file and the key."""


# ---------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One point of the grid: its id, its resolved config and what it needs at run time."""

    id: str
    config: dict
    label: str
    runtime: dict = field(default_factory=dict)  # not hashed: data directories and the like


@dataclass
class Suite:
    name: str
    origin: str
    description: str
    runs: list[Run]
    notes: list[str] = field(default_factory=list)  # runs skipped, and why
    threads: int | None = None  # torch threads per run (None: cores / workers)
    workers: int | None = None  # parallel runs when the caller does not say (None: 1)

    def __len__(self) -> int:
        return len(self.runs)

    def select(self, pattern: str | None) -> "Suite":
        """The runs whose label matches ``pattern`` (comma-separated globs or substrings)."""
        if not pattern:
            return self
        pats = [p.strip() for p in pattern.split(",") if p.strip()]

        def hit(label: str) -> bool:
            return any(fnmatch.fnmatchcase(label, p) if any(c in p for c in "*?[") else p in label
                       for p in pats)

        return Suite(self.name, self.origin, self.description, [r for r in self.runs if hit(r.label)],
                     list(self.notes), self.threads, self.workers)


@dataclass
class RunSummary:
    total: int = 0
    skipped: int = 0
    finished: int = 0
    failed: int = 0
    wall_time: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (label, error text)

    @property
    def ok(self) -> bool:
        return self.failed == 0


# ---------------------------------------------------------------------------------------
# shipped suites
# ---------------------------------------------------------------------------------------
def _suite_dirs() -> list[Path]:
    dirs = []
    try:
        from importlib import resources

        pkg = resources.files("stability") / "suites"
        if pkg.is_dir():
            dirs.append(Path(str(pkg)))
    except (ModuleNotFoundError, TypeError, NotImplementedError):  # pragma: no cover
        pass
    root = Path(__file__).resolve().parent.parent  # a source checkout (or an editable install)
    if (root / "pyproject.toml").is_file() and (root / "suites").is_dir():
        dirs.append(root / "suites")
    return dirs


def shipped_suites() -> dict[str, str]:
    """Names of the shipped suites → where they are read from (a path, or ``<embedded>``)."""
    found: dict[str, str] = {}
    for d in _suite_dirs():
        for p in sorted(d.glob("*.toml")):
            found.setdefault(p.stem, str(p))
    found.setdefault("quick", "<embedded quick.toml>")
    return dict(sorted(found.items()))


def suite_source(suite: str | os.PathLike | None) -> tuple[str, str]:
    """The TOML text of a suite given as a shipped name or a path, and its origin for messages."""
    if suite is None:
        suite = "quick"
    text_path = Path(suite)
    looks_like_path = isinstance(suite, os.PathLike) or str(suite).endswith(".toml") or os.sep in str(suite)
    if text_path.is_file():
        return _read(text_path), str(text_path)
    shipped = shipped_suites()
    if not looks_like_path and str(suite) in shipped:
        where = shipped[str(suite)]
        if where.startswith("<embedded"):
            return _EMBEDDED_QUICK, "quick.toml (embedded)"
        return _read(Path(where)), where
    if looks_like_path:
        raise SuiteError(f"suite file {str(suite)!r} does not exist")
    raise SuiteError(f"unknown suite {str(suite)!r}: not a file, nor a shipped suite; "
                     f"shipped: {', '.join(shipped)}")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path}: not a text (UTF-8) TOML file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise SuiteError(f"{path}: cannot be read ({exc.strerror or exc})") from None


# ---------------------------------------------------------------------------------------
# parsing and validation
# ---------------------------------------------------------------------------------------
def _unknown_key(origin: str, where: str, key: str, allowed: Iterable[str]) -> SuiteError:
    allowed = list(allowed)
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return SuiteError(f"{origin}: unknown key {key!r} in {where}{hint}; allowed: {', '.join(allowed)}")


def _check_keys(origin: str, where: str, table: dict, allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    for key in table:
        if key not in allowed:
            raise _unknown_key(origin, where, key, allowed)


def _axis(value) -> list:
    """A grid axis: a list is its own values, anything else a single value."""
    return list(value) if isinstance(value, list) else [value]


def _grid(options: dict) -> list[dict]:
    """Every combination of the list-valued options (in key order)."""
    keys = list(options)
    axes = [_axis(options[k]) for k in keys]
    return [dict(zip(keys, combo)) for combo in itertools.product(*axes)]


def _jsonable(value, origin: str = "", where: str = ""):
    """Plain JSON types (numpy scalars, tuples and tensors converted); anything else refused."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, origin, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v, origin, f"{where}.{k}") for k, v in value.items()}
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy / torch scalars and arrays
        return _jsonable(value.tolist(), origin, where)
    raise SuiteError(f"{origin}: {where} = {value!r}: a value of type {type(value).__name__} "
                     "cannot be stored; use a number, string, boolean or list")


def _plain_defaults(params: dict) -> dict:
    """The defaults that are plain JSON values (others are left out of configs)."""
    out = {}
    for k, v in params.items():
        if v is inspect.Parameter.empty:
            continue
        try:
            out[k] = _jsonable(v)
        except SuiteError:
            continue
    return out


def _coerce_like(value, default):
    """An int where the default is a float becomes a float (so 1 and 1.0 give one run id)."""
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def run_id(config: dict) -> str:
    """The stable id of a run: a hash of its config (less the unhashed keys; see UNHASHED)."""
    hashed = {k: v for k, v in config.items() if k not in UNHASHED}
    text = json.dumps(hashed, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve_device(device: str | None) -> str:
    """``auto``/None → cuda if available else cpu; cuda without CUDA → a clear error."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    device = str(device)
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise SuiteError(f"device {device!r} was asked for, but CUDA is not available here "
                             f"(torch {torch.__version__}); use --device cpu")
        if ":" in device:
            idx = device.split(":", 1)[1]
            if not idx.isdigit() or int(idx) >= torch.cuda.device_count():
                raise SuiteError(f"device {device!r}: no such CUDA device "
                                 f"({torch.cuda.device_count()} available)")
        return device
    raise SuiteError(f"device {device!r} is not known; allowed: auto, cpu, cuda, cuda:N")


def _lazy(module: str):
    import importlib

    return importlib.import_module(f"stability.{module}")


def _available_tasks() -> list[str]:
    try:
        return list(_lazy("tasks").available())
    except (ImportError, AttributeError):
        return []


def _available_probes() -> list[str]:
    try:
        names = list(_lazy("probes").available())
    except (ImportError, AttributeError):
        names = []
    return sorted(set(names) | set(PROBES) | set(PROBE_ALIASES))


def _train_signature() -> dict:
    """Training option → default (from stability.train.train's signature)."""
    try:
        fn = _lazy("train").train
    except (ImportError, AttributeError):
        return {k: inspect.Parameter.empty for k in TRAIN_KEYS_FALLBACK}
    sig = inspect.signature(fn)
    out = {}
    for k, p in sig.parameters.items():
        if k in TRAIN_NOT_CONFIG or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out[k] = p.default
    return out


def parse_suite(text: str, origin: str = "<suite>") -> dict:
    """Parse TOML and check the spec's shape (keys and plain value types); no names resolved."""
    try:
        spec = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{origin}: TOML syntax error: {exc}") from None
    _check_keys(origin, "the suite's top level", spec, SUITE_KEYS)
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise SuiteError(f"{origin}: the suite needs a name: add name = \"...\" at the top")
    if any(c in name for c in "/\\ ") or name.startswith("."):
        raise SuiteError(f"{origin}: name = {name!r}: use letters, digits, '-', '_' (it names files)")
    transitions = spec.get("transition", [])
    if not isinstance(transitions, list) or not transitions:
        raise SuiteError(f"{origin}: the suite needs at least one [[transition]] table")
    labels = set()
    for i, t in enumerate(transitions):
        where = f"transition[{i}]"
        if not isinstance(t, dict):
            raise SuiteError(f"{origin}: {where} must be a table ([[transition]])")
        _check_keys(origin, f"[[transition]] {where}", t, TRANSITION_KEYS)
        if not isinstance(t.get("name"), str):
            raise SuiteError(f"{origin}: {where} needs name = \"<transition>\"")
        label = t.get("label", t["name"])
        if not isinstance(label, str):
            raise SuiteError(f"{origin}: {where}.label must be a string")
        if label in labels:
            raise SuiteError(f"{origin}: {where}: label {label!r} is used twice; give each "
                             "[[transition]] of the same name its own label = \"...\"")
        labels.add(label)
        if not isinstance(t.get("options", {}), dict):
            raise SuiteError(f"{origin}: {where}.options must be a table")
    experiments = spec.get("experiment", [])
    if not isinstance(experiments, list) or not experiments:
        raise SuiteError(f"{origin}: the suite needs at least one [[experiment]] table "
                         "(probe = \"...\" or task = \"...\")")
    for i, e in enumerate(experiments):
        where = f"experiment[{i}]"
        if not isinstance(e, dict):
            raise SuiteError(f"{origin}: {where} must be a table ([[experiment]])")
        _check_keys(origin, f"[[experiment]] {where}", e, EXPERIMENT_KEYS)
        if ("probe" in e) == ("task" in e):
            raise SuiteError(f"{origin}: {where} needs exactly one of probe = \"...\" or task = \"...\"")
        kind = "probe" if "probe" in e else "task"
        if not isinstance(e[kind], str):
            raise SuiteError(f"{origin}: {where}.{kind} must be a name (a string)")
        for key in ("options", "train", "paper"):
            if not isinstance(e.get(key, {}), dict):
                raise SuiteError(f"{origin}: {where}.{key} must be a table")
        if kind == "probe" and "train" in e:
            raise SuiteError(f"{origin}: {where}.train: a probe experiment does not train; "
                             "remove it or use task = \"...\"")
        match = e.get("match", "hidden")
        if match not in MATCHES:
            raise SuiteError(f"{origin}: {where}.match = {match!r}; allowed: {', '.join(map(repr, MATCHES))}")
        if match == "params":
            if "budget" not in e:
                raise SuiteError(f"{origin}: {where}: match = \"params\" needs budget = <parameter count>")
            if "hidden_size" in e:
                raise SuiteError(f"{origin}: {where}: hidden_size and match = \"params\" exclude each other "
                                 "(the hidden size is solved from the budget)")
            for b in _axis(e["budget"]):
                if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                    raise SuiteError(f"{origin}: {where}.budget = {b!r} must be a positive integer")
        elif "budget" in e:
            raise SuiteError(f"{origin}: {where}.budget needs match = \"params\"")
        sel = e.get("transitions")
        if sel is not None:
            if not isinstance(sel, list) or not all(isinstance(s, str) for s in sel) or not sel:
                raise SuiteError(f"{origin}: {where}.transitions must be a list of transition labels")
            for s in sel:
                if s not in labels:
                    raise SuiteError(f"{origin}: {where}.transitions: {s!r} is not a [[transition]] label "
                                     f"of this suite; labels: {', '.join(sorted(labels))}")
        if "measure" in e:
            m = e["measure"]
            if not isinstance(m, list) or not all(isinstance(s, str) for s in m):
                raise SuiteError(f"{origin}: {where}.measure must be a list of probe names (or [])")
            if kind == "probe":
                raise SuiteError(f"{origin}: {where}.measure is for task experiments")
    # plain value checks
    _check_seeds(origin, "seeds", spec.get("seeds", [0]))
    for i, e in enumerate(experiments):
        if "seeds" in e:
            _check_seeds(origin, f"experiment[{i}].seeds", e["seeds"])
        for h in _axis(e.get("hidden_size", spec.get("hidden_size", 64))):
            if isinstance(h, bool) or not isinstance(h, int) or h < 1:
                raise SuiteError(f"{origin}: experiment[{i}].hidden_size = {h!r} must be a positive integer")
        nl = e.get("nonlinearity", spec.get("nonlinearity", "tanh"))
        if nl not in NONLINEARITIES:
            raise SuiteError(f"{origin}: experiment[{i}].nonlinearity = {nl!r}; allowed: "
                             f"{', '.join(map(repr, NONLINEARITIES))}")
        mb = e.get("measure_batch", DEFAULT_MEASURE_BATCH)
        if isinstance(mb, bool) or not isinstance(mb, int) or mb < 1:
            raise SuiteError(f"{origin}: experiment[{i}].measure_batch = {mb!r} must be a positive integer")
    for h in _axis(spec.get("hidden_size", 64)):
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise SuiteError(f"{origin}: hidden_size = {h!r} must be a positive integer")
    if spec.get("dtype", "float32") not in DTYPES:
        raise SuiteError(f"{origin}: dtype = {spec['dtype']!r}; allowed: {', '.join(map(repr, DTYPES))}")
    if spec.get("nonlinearity", "tanh") not in NONLINEARITIES:
        raise SuiteError(f"{origin}: nonlinearity = {spec['nonlinearity']!r}; allowed: "
                         f"{', '.join(map(repr, NONLINEARITIES))}")
    if not isinstance(spec.get("train", {}), dict):
        raise SuiteError(f"{origin}: train must be a table")
    dev = spec.get("device", "auto")
    if not isinstance(dev, str) or not (dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:")):
        raise SuiteError(f"{origin}: device = {dev!r}; allowed: 'auto', 'cpu', 'cuda', 'cuda:N'")
    for key, what in (("threads", "torch threads per run"), ("workers", "parallel runs")):
        value = spec.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise SuiteError(f"{origin}: {key} = {value!r} must be a positive integer ({what})")
    if not isinstance(spec.get("description", ""), str):
        raise SuiteError(f"{origin}: description must be a string")
    return spec


def _check_seeds(origin: str, where: str, seeds) -> None:
    for s in _axis(seeds):
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise SuiteError(f"{origin}: {where} = {seeds!r}: seeds must be non-negative integers")
    if isinstance(seeds, list) and not seeds:
        raise SuiteError(f"{origin}: {where} is empty")


class _Resolver:
    """Builds each transition and task once (validating them) and caches what it learned."""

    def __init__(self, origin: str):
        self.origin = origin
        self._transitions: dict[str, Any] = {}
        self._tasks: dict[str, Any] = {}
        self._sizes: dict[str, int] = {}
        self._probes: set[str] = set()

    # transitions -------------------------------------------------------------------
    def transition_options(self, name: str, given: dict, where: str) -> dict:
        """Check names and value types; ints coerced to float where the default is a float."""
        from . import transitions

        if name not in transitions.available():
            raise SuiteError(f"{self.origin}: {where}.name = {name!r} is not a known transition; "
                             f"available: {', '.join(transitions.available())}")
        allowed = transitions.option_names(name)
        defaults = transitions.option_defaults(name)
        out = {}
        for k, v in given.items():
            if k not in allowed:
                raise _unknown_key(self.origin, f"{where}.options (transition {name!r})", k, allowed)
            out[k] = _coerce_like(_jsonable(v, self.origin, f"{where}.options.{k}"), defaults.get(k))
        return out

    def transition(self, name: str, options: dict, n: int, where: str) -> dict:
        """Build the transition once (validating options at size n); its resolved options."""
        from . import transitions

        key = json.dumps([name, options, n], sort_keys=True)
        if key not in self._transitions:
            import torch

            try:
                with torch.random.fork_rng(devices=[]):
                    t = transitions.create(name, n, **options)
                resolved = {**_plain_defaults(transitions.option_defaults(name)), **options}
                resolved.update(_jsonable(t.options() or {}))
                self._transitions[key] = resolved
            except (TypeError, ValueError) as exc:
                opts = ", ".join(f"{k} = {v!r}" for k, v in options.items()) or "defaults"
                raise SuiteError(f"{self.origin}: {where}: transition {name!r} ({opts}) at hidden_size {n} "
                                 f"is refused: {exc}") from None
        return dict(self._transitions[key])

    def hidden_for_budget(self, name: str, options: dict, budget: int, input_size: int, output_size: int,
                          where: str) -> int:
        key = json.dumps([name, options, budget, input_size, output_size], sort_keys=True)
        if key not in self._sizes:
            try:
                sizing = _lazy("sizing")
            except ImportError as exc:
                raise SuiteError(f"{self.origin}: {where}: match = \"params\" needs stability.sizing "
                                 f"({exc})") from None
            try:
                n = sizing.hidden_for_budget(name, budget, input_size, output_size, **options)
            except (TypeError, ValueError) as exc:
                raise SuiteError(f"{self.origin}: {where}: no hidden size of transition {name!r} fits "
                                 f"budget = {budget}: {exc}") from None
            self._sizes[key] = int(n)
        return self._sizes[key]

    # probes --------------------------------------------------------------------------
    def probe(self, name: str, options: dict, n: int | None, nonlinearity: str, where: str) -> None:
        """Run probe ``name`` with its options once on a small dense model (hidden size n, or 4)."""
        extra = {k: v for k, v in options.items() if k not in _input_options(name)}
        if not extra:
            return
        key = json.dumps([name, options, n, nonlinearity], sort_keys=True)
        if key in self._probes:
            return
        import torch

        from .model import RecurrentNet

        T, isz = options.get("T", 2), options["input_size"]
        try:
            with torch.random.fork_rng(devices=[]):
                model = RecurrentNet(isz, n or 4, 1, "dense", nonlinearity=nonlinearity)
                x = torch.zeros(T, 1, isz)
                kw = {k: v for k, v in (("x", x), ("loss_fn", _last_step_mse), ("y", torch.zeros(1, 1)))
                      if k in PROBES.get(name, ())}
                measure(name, model, "init", options=extra, **kw)
        except (TypeError, ValueError) as exc:
            opts = ", ".join(f"{k} = {v!r}" for k, v in extra.items())
            raise SuiteError(f"{self.origin}: {where}: probe {name!r} refuses {opts}"
                             f"{f' at hidden_size {n}' if n else ''}: {exc}") from None
        self._probes.add(key)

    # tasks ---------------------------------------------------------------------------
    def task(self, name: str, options: dict, data_dir: str | None, where: str):
        """(task, resolved options, definition) for a task built once with its options."""
        key = json.dumps([name, options, data_dir], sort_keys=True)
        if key not in self._tasks:
            try:
                tasks = _lazy("tasks")
            except ImportError as exc:
                raise SuiteError(f"{self.origin}: {where}: tasks are not available ({exc})") from None
            names = list(tasks.available())
            if name not in names:
                raise SuiteError(f"{self.origin}: {where}.task = {name!r} is not a known task; "
                                 f"available: {', '.join(names)}")
            allowed = [k for k in _task_option_names(tasks, name) if k != "data_dir"]
            for k in options:
                if allowed and k not in allowed:
                    raise _unknown_key(self.origin, f"{where}.options (task {name!r})", k, allowed)
            kwargs = dict(options)
            if data_dir is not None:
                kwargs["data_dir"] = data_dir
            import torch

            try:
                with torch.random.fork_rng(devices=[]):
                    task = tasks.create(name, **kwargs)
            except FileNotFoundError as exc:
                raise SuiteError(f"{self.origin}: {where}: task {name!r} cannot find its data: {exc}") from None
            except (TypeError, ValueError, KeyError) as exc:
                opts = ", ".join(f"{k} = {v!r}" for k, v in options.items()) or "defaults"
                raise SuiteError(f"{self.origin}: {where}.options: task {name!r} ({opts}) is refused: "
                                 f"{exc}") from None
            defaults = _plain_defaults({k: v for k, v in _task_option_defaults(tasks, name, task).items()
                                        if k != "data_dir"})
            resolved = {**defaults, **{k: _coerce_like(v, defaults.get(k)) for k, v in options.items()}}
            definition = {}
            if callable(getattr(task, "definition", None)):
                try:
                    definition = _jsonable({k: v for k, v in task.definition().items()
                                            if k not in ("data_dir", "path")})
                except SuiteError:
                    definition = {}
            self._tasks[key] = (task, resolved, definition)
        return self._tasks[key]


def _task_option_names(tasks, name: str) -> list[str]:
    fn = getattr(tasks, "option_names", None)
    if callable(fn):
        try:
            return list(fn(name))
        except (TypeError, ValueError, KeyError):
            return []
    return []


def _task_option_defaults(tasks, name: str, task) -> dict:
    fn = getattr(tasks, "option_defaults", None)
    if callable(fn):
        try:
            return dict(fn(name))
        except (TypeError, ValueError, KeyError):
            pass
    try:
        params = inspect.signature(type(task).__init__).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return {}
    return {k: p.default for k, p in params.items()
            if k != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def load_suite(suite: str | os.PathLike | None = None, *, text: str | None = None, origin: str | None = None,
               device: str | None = None, ptb_dir: str | os.PathLike | None = None,
               mnist_dir: str | os.PathLike | None = None, only: str | None = None) -> Suite:
    """Parse, validate and expand a suite (a shipped name, a path, or ``text``) into runs.

    ``device`` overrides the spec's. ``ptb_dir`` (else $STABILITY_PTB_DIR) and ``mnist_dir``
    (else $STABILITY_MNIST_DIR) are where tasks read their data: without the one a task needs,
    its runs are skipped with a note in ``Suite.notes``. ``only`` keeps the runs whose label
    matches (see :meth:`Suite.select`).
    """
    if text is None:
        text, origin = suite_source(suite)
    origin = origin or "<suite>"
    spec = parse_suite(text, origin)
    if device is not None:
        dev = resolve_device(device)
    else:
        try:
            dev = resolve_device(spec.get("device", "auto"))
        except SuiteError as exc:
            raise SuiteError(f"{origin}: device = {spec.get('device')!r}: {exc}") from None
    dirs = {}
    for key, given in (("ptb", ptb_dir), ("mnist", mnist_dir)):
        flag, env = DATA_SOURCES[key]
        value = given if given is not None else (os.environ.get(env) or None)
        if value is not None:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise SuiteError(f"{key.upper()} directory {str(path)!r} does not exist (from {flag} or ${env})")
            dirs[key] = str(path)
    runs, notes = _expand(spec, origin, dev, dirs)
    s = Suite(spec["name"], origin, spec.get("description", ""), runs, notes, spec.get("threads"),
              spec.get("workers"))
    return s.select(only)


def _fmt(options: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


def _expand(spec: dict, origin: str, device: str, dirs: dict[str, str]) -> tuple[list[Run], list[str]]:
    res = _Resolver(origin)
    name = spec["name"]
    dtype = spec.get("dtype", "float32")
    top_train = spec.get("train", {})
    # transitions: label -> list of (given options) grid points
    trans = []
    for i, t in enumerate(spec["transition"]):
        where = f"transition[{i}]"
        grid = _grid(t.get("options", {}))
        checked = [res.transition_options(t["name"], g, where) for g in grid]
        trans.append((t.get("label", t["name"]), t["name"], checked, where))
    probe_names = _available_probes()
    train_sig = _train_signature()
    runs: dict[str, Run] = {}
    notes: list[str] = []
    for i, e in enumerate(spec["experiment"]):
        where = f"experiment[{i}]"
        kind = "probe" if "probe" in e else "task"
        ename = e[kind]
        seeds = _axis(e.get("seeds", spec.get("seeds", [0])))
        nonlin = e.get("nonlinearity", spec.get("nonlinearity", "tanh"))
        match = e.get("match", "hidden")
        selected = [t for t in trans if e.get("transitions") is None or t[0] in e["transitions"]]
        paper = _jsonable(e.get("paper", {}), origin, f"{where}.paper")
        measure = list(e.get("measure", DEFAULT_MEASURE)) if kind == "task" else []
        measure = [PROBE_ALIASES.get(m, m) for m in measure]
        for m in measure:
            if m not in PROBES:
                raise SuiteError(f"{origin}: {where}.measure: {m!r} is not a probe the runner can measure "
                                 f"at init/final; allowed: {', '.join(PROBES)}")
        runtime: dict = {}
        if kind == "probe":
            ename = PROBE_ALIASES.get(ename, ename)
            if ename not in probe_names:
                raise SuiteError(f"{origin}: {where}.probe = {ename!r} is not a known probe; "
                                 f"available: {', '.join(probe_names)}")
            option_grid = [(o, _probe_options(ename, o, origin, where)) for o in _grid(e.get("options", {}))]
            train_grid = [None]
        else:
            opts = dict(e.get("options", {}))
            data_dir = opts.pop("data_dir", None)
            known = _available_tasks()
            if known and ename not in known:
                raise SuiteError(f"{origin}: {where}.task = {ename!r} is not a known task; "
                                 f"available: {', '.join(known)}")
            need = data_needed(ename, opts)
            if need is not None and data_dir is None:
                data_dir = dirs.get(need)
                if data_dir is None:
                    flag, env = DATA_SOURCES[need]
                    notes.append(f"skipping {where} ({ename}): no {need.upper()} directory given "
                                 f"({flag} DIR or ${env})")
                    continue
            if data_dir is not None:
                runtime["data_dir"] = str(data_dir)
            option_grid = [(o, _jsonable(o, origin, f"{where}.options")) for o in _grid(opts)]
            tdefaults = {**top_train, **e.get("train", {})}
            for k in tdefaults:
                if k not in train_sig:
                    raise _unknown_key(origin, f"{where}.train", k, list(train_sig))
            if "steps" not in tdefaults and train_sig.get("steps", inspect.Parameter.empty) is inspect.Parameter.empty:
                raise SuiteError(f"{origin}: {where}.train needs steps = <training steps>")
            train_grid = [_check_train(origin, where, g, train_sig) for g in _grid(tdefaults)]
        hidden_axis = _axis(e.get("hidden_size", spec.get("hidden_size", 64)))
        budget_axis = _axis(e["budget"]) if match == "params" else [None]
        if kind == "probe":  # the probe's own options: try them once on a small model
            for given, options in option_grid:
                for n in (hidden_axis if match == "hidden" else [None]):
                    res.probe(ename, options, n, nonlin, f"{where}.options")
        for given, options in option_grid:
            if kind == "task":
                task, task_options, definition = res.task(ename, options, runtime.get("data_dir"),
                                                          where)
                in_size, out_size = int(task.input_size), int(task.output_size)
            else:
                task_options, definition = options, {}
                in_size, out_size = int(options["input_size"]), 1
            for label, tname, tgrid, twhere in selected:
                for topts in tgrid:
                    for budget in budget_axis:
                        sizes = ([res.hidden_for_budget(tname, topts, budget, in_size, out_size, where)]
                                 if match == "params" else hidden_axis)
                        for n in sizes:
                            resolved = res.transition(tname, topts, n, twhere)
                            for tr in train_grid:
                                for seed in seeds:
                                    cfg = {
                                        "suite": name, "kind": kind, "name": ename,
                                        "transition": tname, "transition_options": resolved,
                                        "hidden_size": int(n), "nonlinearity": nonlin,
                                        "options": task_options,
                                        "train": tr if tr is not None else {},
                                        "seed": int(seed), "device": device, "dtype": dtype,
                                        "match": match, "budget": budget,
                                    }
                                    if kind == "task":
                                        cfg["measure"] = {"probes": measure,
                                                          "batch": e.get("measure_batch", DEFAULT_MEASURE_BATCH)}
                                        cfg["definition"] = definition
                                    fig = _paper_for(paper, label, tname)
                                    if fig:
                                        cfg["paper"] = fig
                                    rid = run_id(cfg)
                                    if rid in runs:
                                        continue
                                    tag = f"{tname}({_fmt(topts)})" if topts else tname
                                    if label != tname:
                                        tag = f"{label}:{tag}"
                                    olab = f"({_fmt(given)})" if given else ""
                                    extra = f" budget={budget}" if budget is not None else ""
                                    lab = f"{kind}:{ename}{olab} {tag} n={n}{extra} seed={seed}"
                                    runs[rid] = Run(rid, cfg, lab, dict(runtime))
    return list(runs.values()), notes


def _paper_for(paper: dict, label: str, tname: str) -> dict:
    """Reported figures for one transition: plain entries apply to all, tables per label/name."""
    out = {k: v for k, v in paper.items() if not isinstance(v, dict)}
    for key in (tname, label):
        if isinstance(paper.get(key), dict):
            out.update(paper[key])
    return out


def _check_train(origin: str, where: str, train: dict, sig: dict) -> dict:
    out = {**_plain_defaults({k: v for k, v in sig.items()}), **_jsonable(train, origin, f"{where}.train")}
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
        if isinstance(clip, bool) or not isinstance(clip, (int, float)) or clip < 0:
            raise SuiteError(f"{origin}: {where}.train.clip = {clip!r} must be a number >= 0 (0: no clipping)")
        out["clip"] = float(clip)
    opt = out.get("optimizer")
    if opt is not None:
        known = _optimizers()
        if not isinstance(opt, str) or (known and opt not in known):
            raise SuiteError(f"{origin}: {where}.train.optimizer = {opt!r}; allowed: {', '.join(known)}")
    return out


def _optimizers() -> list[str]:
    try:
        train = _lazy("train")
    except ImportError:
        return []
    for attr in ("OPTIMIZERS", "optimizers"):
        v = getattr(train, attr, None)
        if isinstance(v, (dict, list, tuple)):
            return list(v)
    return []


def _probe_options(name: str, options: dict, origin: str, where: str) -> dict:
    """A probe experiment's options: the runner's input options (with defaults) + the probe's own."""
    out = {}
    inputs = _input_options(name)
    for k, default in inputs.items():
        v = options.get(k, default)
        if k == "input_scale":
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise SuiteError(f"{origin}: {where}.options.{k} = {v!r} must be a number >= 0")
            v = float(v)
        elif isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise SuiteError(f"{origin}: {where}.options.{k} = {v!r} must be a positive integer")
        out[k] = v
    extra = {k: v for k, v in options.items() if k not in inputs}
    allowed = _probe_kwargs(name)
    for k in extra:
        if k not in allowed:
            raise _unknown_key(origin, f"{where}.options (probe {name!r})", k, list(inputs) + list(allowed))
    out.update(_jsonable(extra, origin, f"{where}.options"))
    return out


def _input_options(name: str) -> dict:
    """The runner's own options of a probe (with defaults): all of them for probes fed inputs."""
    if "x" in PROBES.get(PROBE_ALIASES.get(name, name), ()):
        return dict(PROBE_INPUT_OPTIONS)
    return {"input_size": PROBE_INPUT_OPTIONS["input_size"]}


# ---------------------------------------------------------------------------------------
# probes: how each is measured and turned into metric rows (names: docs/contracts.md)
# ---------------------------------------------------------------------------------------
#: probe name -> the inputs the runner supplies (the probe's other keyword options come from
#: the suite); names as in stability.probes.available(), "gradients" an alias
PROBES = {
    "jacobian": ("x",),
    "spectrum": (),
    "lyapunov": ("x",),
    "gradient_flow": ("x", "loss_fn", "y"),
}
PROBE_ALIASES = {"gradients": "gradient_flow"}
SCALARS = ("half_life", "decay_rate", "grad_ratio", "sigma_min", "sigma_max", "condition",
           "spectral_radius", "orthogonality_error", "lyapunov_max")


def _probe_function(name: str) -> Callable:
    return _lazy("probes").get(PROBE_ALIASES.get(name, name))


def _probe_kwargs(name: str) -> dict:
    """Keyword options a probe function takes beyond what the runner supplies."""
    try:
        params = inspect.signature(_probe_function(name)).parameters
    except (ImportError, AttributeError, KeyError, ValueError, TypeError):
        return {}
    supplied = {"model", "x", "h0", "loss_fn", "y"}
    return {k: p.default for k, p in list(params.items())[1:]
            if k not in supplied and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _scalar_rows(d: dict, split: str) -> list[tuple]:
    rows = []
    for k in SCALARS:
        if k in d:
            try:
                rows.append((0, split, k, float(d[k])))
            except (TypeError, ValueError):
                continue
    return rows


def measure(name: str, model, split: str, *, x=None, loss_fn=None, y=None,
            options: dict | None = None) -> list[tuple]:
    """Run probe ``name`` on ``model``; its metric rows ``(step, split, metric, value)``.

    Metric names and what ``step`` means follow docs/contracts.md: ``jacobian_spectral`` /
    ``jacobian_frobenius`` per gap (mean over samples) with ``half_life``, ``decay_rate``;
    ``singular_value`` per index with ``sigma_min``, ``sigma_max``, ``condition``,
    ``spectral_radius``, ``orthogonality_error``; ``lyapunov`` per index with
    ``lyapunov_max``; ``grad_norm`` per t with ``grad_ratio``.
    """
    import pandas as pd

    probes = _lazy("probes")
    name = PROBE_ALIASES.get(name, name)
    fn = _probe_function(name)
    options = dict(options or {})
    if name == "jacobian":
        df = fn(model, x, **options)
        mean = df.groupby("gap")[["spectral", "frobenius"]].mean()
        rows = [(int(g), split, "jacobian_spectral", float(r.spectral)) for g, r in mean.iterrows()]
        rows += [(int(g), split, "jacobian_frobenius", float(r.frobenius)) for g, r in mean.iterrows()]
        return rows + _scalar_rows(probes.half_life(df), split)
    if name == "spectrum":
        df = fn(model, **options)
        rows = [(int(i), split, "singular_value", float(v)) for i, v in zip(df["index"], df["singular_value"])]
        return rows + _scalar_rows(df.attrs, split)
    if name == "lyapunov":
        df = fn(model, x, **options)
        rows = [(int(i), split, "lyapunov", float(v))
                for i, v in df.groupby("index")["exponent"].mean().items()]
        return rows + [(0, split, "lyapunov_max", float(probes.top_exponent(df)))]
    if name == "gradient_flow":
        df = fn(model, x, loss_fn, y, **options)
        g = df.groupby("t")["grad_norm"].apply(lambda v: float((v ** 2).sum() ** 0.5))
        rows = [(int(t), split, "grad_norm", float(v)) for t, v in g.items()]
        return rows + [(0, split, "grad_ratio", float(probes.grad_ratio(df)))]
    # any other registered probe: it must return metric rows (step, metric, value) itself
    out = fn(model, **options)
    if isinstance(out, pd.DataFrame) and {"metric", "value"} <= set(out.columns):
        steps = out["step"] if "step" in out.columns else [0] * len(out)
        return [(int(s), split, str(m), float(v)) for s, m, v in zip(steps, out["metric"], out["value"])]
    raise TypeError(f"probe {name!r} returned {type(out).__name__}; the runner stores only the built-in "
                    "probes and probes returning (step, metric, value) rows")


# ---------------------------------------------------------------------------------------
# executing one run
# ---------------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    import torch

    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2 ** 32)
    except ImportError:  # pragma: no cover
        pass
    torch.manual_seed(seed)


def _dtype(name: str):
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[name]


def execute_run(config: dict, runtime: dict | None = None) -> dict:
    """Run one configuration; never raises for a failing run.

    Returns ``{"metrics": DataFrame or None, "error": traceback text or None, "wall_time": s}``.
    Seeded from ``config["seed"]``; runs in one process are serialized (a lock), so threads of
    an executor cannot interleave their global RNG use.
    """
    import pandas as pd
    import torch

    runtime = dict(runtime or {})
    with _RUN_LOCK, _threads(runtime.get("threads")):
        t0 = time.perf_counter()
        devices = []
        if str(config.get("device", "cpu")).startswith("cuda") and torch.cuda.is_available():
            devices = [torch.device(config["device"]).index or 0]
        try:
            with torch.random.fork_rng(devices=devices):
                seed_everything(int(config["seed"]))
                rows, params = (_run_probe if config["kind"] == "probe" else _run_task)(config, runtime)
            wall = time.perf_counter() - t0
            rows.append((0, "summary", "params", float(params)))
            rows.append((0, "summary", "wall_time", wall))
            df = pd.DataFrame(rows, columns=["step", "split", "metric", "value"])
            return {"metrics": df, "error": None, "wall_time": wall}
        except Exception:  # a failing run is recorded, the suite goes on
            return {"metrics": None, "error": traceback.format_exc(), "wall_time": time.perf_counter() - t0}


class _threads:
    """Set torch's intra-op threads for the duration of a run (None: leave them)."""

    def __init__(self, n: int | None):
        self.n, self.before = n, None

    def __enter__(self):
        if self.n:
            import torch

            self.before = torch.get_num_threads()
            torch.set_num_threads(int(self.n))
        return self

    def __exit__(self, *exc):
        if self.before is not None:
            import torch

            torch.set_num_threads(self.before)
        return False


def _build_model(config: dict, input_size: int, output_size: int):
    import torch

    from .model import RecurrentNet

    model = RecurrentNet(input_size, config["hidden_size"], output_size, config["transition"],
                         nonlinearity=config["nonlinearity"], **config["transition_options"])
    return model.to(device=torch.device(config["device"]), dtype=_dtype(config["dtype"]))


def _n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def _run_probe(config: dict, runtime: dict) -> tuple[list[tuple], int]:
    import torch

    name = PROBE_ALIASES.get(config["name"], config["name"])
    opts = dict(config["options"])
    inputs = {k: opts.pop(k, v) for k, v in _input_options(name).items()}
    model = _build_model(config, inputs["input_size"], 1)
    kwargs = {}
    if "x" in PROBES.get(name, ()):
        gen = torch.Generator().manual_seed(int(config["seed"]))
        T, batch, isz = inputs["T"], inputs["batch"], inputs["input_size"]
        x = torch.randn(T, batch, isz, generator=gen, dtype=torch.float64) * inputs["input_scale"]
        kwargs["x"] = x.to(device=torch.device(config["device"]), dtype=_dtype(config["dtype"]))
        if name == "gradient_flow":  # at init, for a regression of the last output on a random target
            kwargs["y"] = torch.randn(batch, 1, generator=gen, dtype=torch.float64).to(kwargs["x"])
            kwargs["loss_fn"] = _last_step_mse
    rows = measure(name, model, "init", options=opts, **kwargs)
    return rows, _n_params(model)


def _last_step_mse(outputs, y):
    import torch

    return torch.nn.functional.mse_loss(outputs[-1], y)


def _task_measure(config: dict, model, task, split: str, gen) -> list[tuple]:
    rows: list[tuple] = []
    probes = config.get("measure", {}).get("probes", [])
    if not probes:
        return rows
    batch = config.get("measure", {}).get("batch", DEFAULT_MEASURE_BATCH)
    x = y = None
    if any(p != "spectrum" for p in probes):
        x, y = task.sample(batch, gen)
        dev = next(model.parameters()).device
        x, y = x.to(dev), y.to(dev)
        if x.is_floating_point():
            x = x.to(next(model.parameters()).dtype)
    for p in probes:
        p = PROBE_ALIASES.get(p, p)
        kw = {k: v for k, v in (("x", x), ("loss_fn", task.loss), ("y", y)) if k in PROBES.get(p, ())}
        rows += measure(p, model, split, **kw)
    return rows


def _run_task(config: dict, runtime: dict) -> tuple[list[tuple], int]:
    import torch

    tasks = _lazy("tasks")
    train_mod = _lazy("train")
    kwargs = dict(config["options"])
    if runtime.get("data_dir"):
        kwargs["data_dir"] = runtime["data_dir"]
    task = tasks.create(config["name"], **kwargs)
    model = _build_model(config, int(task.input_size), int(task.output_size))
    gen = torch.Generator().manual_seed(int(config["seed"]) + 7919)
    rows = _task_measure(config, model, task, "init", gen)
    tr = dict(config["train"])
    steps = tr.pop("steps")
    sig = inspect.signature(train_mod.train).parameters
    extra = {}
    if "progress" in sig:
        extra["progress"] = bool(runtime.get("progress", False))
    if "seed" in sig:
        extra["seed"] = int(config["seed"])
    tr = {k: v for k, v in tr.items() if k in sig}
    log = train_mod.train(model, task, steps, **tr, **extra)
    if log is not None and len(log):
        rows += [(int(s), str(sp), str(m), float(v))
                 for s, sp, m, v in log[["step", "split", "metric", "value"]].itertuples(index=False, name=None)]
    gen = torch.Generator().manual_seed(int(config["seed"]) + 7919)
    rows += _task_measure(config, model, task, "final", gen)
    return rows, _n_params(model)


# ---------------------------------------------------------------------------------------
# running a suite
# ---------------------------------------------------------------------------------------
class InlineExecutor(cf.Executor):
    """Runs each submitted call at once, in this process (the ``--workers 1`` executor)."""

    _max_workers = 1

    def submit(self, fn, /, *args, **kwargs):
        fut: cf.Future = cf.Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            fut.set_exception(exc)
        return fut


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, threads))


def local_executor(workers: int, threads: int | None = None) -> cf.Executor:
    """A process pool of ``workers`` (spawned; each with ``threads`` or cores/workers torch threads)."""
    if workers <= 1:
        return InlineExecutor()
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    return cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_init_worker, initargs=(threads,))


def dask_executor(scheduler: str | None = None, workers: int = 1):
    """(executor, closer) for a dask.distributed cluster at ``scheduler``, or a local one."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise SuiteError("--executor dask needs dask.distributed: pip install 'stability[dask]' "
                         f"({exc})") from None
    if scheduler:
        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise SuiteError(f"cannot reach the dask scheduler at {scheduler!r}: {exc}") from None
        cluster = None
    else:
        cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)

    def close():
        client.close()
        if cluster is not None:
            cluster.close()

    return client.get_executor(pure=False), close


def _window(executor: cf.Executor, workers: int) -> int:
    n = getattr(executor, "_max_workers", None)
    if isinstance(n, int) and n > 0:
        return n
    client = getattr(executor, "_client", None)
    if client is not None:
        try:
            return max(1, sum(client.nthreads().values()))
        except Exception:  # pragma: no cover
            pass
    return max(1, workers)


def _last_line(text: str) -> str:
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "(no message)"


def run_suite(suite: Suite, store, *, workers: int = 1, executor: cf.Executor | None = None,
              force: bool = False, progress: bool = True, echo: Callable[[str], None] | None = None,
              window: int | None = None, threads: int | None = None) -> RunSummary:
    """Run every run of ``suite`` not yet finished in ``store`` (all of them with ``force``).

    ``executor``: any ``concurrent.futures.Executor`` (a dask cluster's included); without one,
    ``workers`` local processes (1: in this process). The parent writes the store: each run is
    marked running when submitted and finished (rows and status in one transaction) or failed
    (with its traceback) when its result arrives; a failing run never stops the suite.
    ``threads``: torch threads per run (default: the suite's ``threads``, else torch's default
    in this process and cores/workers in a local pool).
    """
    from tqdm.auto import tqdm

    from .store import environment

    echo = echo or (lambda msg: tqdm.write(msg, file=sys.stderr))
    summary = RunSummary(total=len(suite.runs))
    done = set() if force else store.finished_ids()
    todo = [r for r in suite.runs if r.id not in done]
    summary.skipped = len(suite.runs) - len(todo)
    t0 = time.perf_counter()
    if not todo:
        summary.wall_time = time.perf_counter() - t0
        return summary
    own = executor is None
    threads = threads or suite.threads
    ex = executor if executor is not None else local_executor(workers, threads)
    inline = isinstance(ex, InlineExecutor)
    width = window or _window(ex, workers)
    envs: dict[str, dict] = {}
    bar = tqdm(total=len(todo), desc=suite.name, unit="run", disable=not progress, dynamic_ncols=True,
               file=sys.stderr)
    pending: dict[cf.Future, Run] = {}
    queue = iter(todo)

    def record(run: Run, fut: cf.Future) -> None:
        try:
            result = fut.result()
        except Exception:
            result = {"metrics": None, "error": traceback.format_exc()}
        if result.get("error"):
            store.fail(run.id, result["error"])
            summary.failed += 1
            summary.failures.append((run.label, result["error"]))
            echo(f"FAILED {run.label}: {_last_line(result['error'])}")
        else:
            store.finish(run.id, result["metrics"])
            summary.finished += 1
        bar.update(1)

    def submit_next() -> bool:
        run = next(queue, None)
        if run is None:
            return False
        dev = run.config.get("device", "cpu")
        if dev not in envs:
            envs[dev] = environment(dev)
        env = dict(envs[dev])
        if run.runtime.get("data_dir"):
            env["data_dir"] = run.runtime["data_dir"]
        if threads:
            env["threads"] = threads
        store.start(run.id, suite.name, run.config, env)
        if inline:
            bar.set_postfix_str(run.label[:60], refresh=True)
        long_run = run.config.get("train", {}).get("steps", 0) >= LONG_RUN_STEPS
        rt = {**run.runtime, "progress": bool(progress and inline and long_run), "threads": threads}
        fut = ex.submit(execute_run, run.config, rt)
        if inline:
            record(run, fut)
        else:
            pending[fut] = run
        return True

    try:
        while True:
            while len(pending) < width and submit_next():
                pass
            if not pending:
                break
            finished, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                record(pending.pop(fut), fut)
    except BaseException:
        for fut in pending:
            fut.cancel()
        if own:
            ex.shutdown(wait=False, cancel_futures=True)
            own = False
        raise
    finally:
        bar.close()
        if own:
            ex.shutdown(wait=True)
    summary.wall_time = time.perf_counter() - t0
    return summary


# ---------------------------------------------------------------------------------------
# the embedded default suite: a byte-for-byte copy of suites/quick.toml, so that an
# installed package (without the source tree) still has its default (a test checks it)
# ---------------------------------------------------------------------------------------
_EMBEDDED_QUICK = r'''# The default suite of `stability run`: a few minutes on 2 CPU cores.
#
# - Jacobian norm decay at initialization for every built-in transition, with a grid of
#   reflector counts and margins for the spectral one;
# - a short copy and adding run per transition (with the Jacobian and spectrum measured
#   at init and after training);
# - a short word-level PTB run per transition on the real data, when a PTB directory is
#   given (--ptb-dir DIR or $STABILITY_PTB_DIR); skipped with a note otherwise.
#
# Format: see `stability.suite` (lists are grid axes). A copy of this file is embedded in
# stability/suite.py for installed packages; tests/test_suite.py checks the two agree.

name = "quick"
description = "Smoke-scale tour: Jacobian decay at init for every transition, short copy/adding (and PTB) runs"
seeds = [0]
device = "auto"
hidden_size = 64
nonlinearity = "tanh"
threads = 1      # small models: one torch thread per run is fastest (use --workers 2 on 2 cores)

[train]
optimizer = "rmsprop"
lr = 1e-3
transition_lr = 1e-4
clip = 1.0
batch_size = 32
eval_every = 100
eval_batches = 4
log_every = 10

[[transition]]
name = "dense"

[[transition]]
name = "exprnn"

[[transition]]
name = "cayley"

[[transition]]
name = "householder"

[[transition]]
name = "spectral"
options = { margin = 0.1 }

[[transition]]
name = "spectral"
label = "spectral-grid"
options = { reflectors = [8, 32, 64], margin = [0.01, 0.1, 0.5] }

[[experiment]]
probe = "jacobian"
options = { T = 300, batch = 8 }

[[experiment]]
task = "copy"
options = { T = 50 }
train = { steps = 300 }
transitions = ["dense", "exprnn", "cayley", "householder", "spectral"]

[[experiment]]
task = "adding"
options = { T = 50 }
train = { steps = 300 }
transitions = ["dense", "exprnn", "cayley", "householder", "spectral"]

[[experiment]]
# the files here may lack ptb.train.txt: train on the validation file, evaluate on test
task = "ptb"
options = { train_split = "valid", eval_split = "test", bptt = 35 }
train = { steps = 100, batch_size = 20, eval_every = 0 }
transitions = ["dense", "exprnn", "cayley", "householder", "spectral"]
'''
