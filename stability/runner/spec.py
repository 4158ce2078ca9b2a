"""The suite file: TOML in, its shape checked (keys, plain value types), shipped suites found.

The format is described in ``docs/suite-format.md``. Nothing here resolves a name (that is
:mod:`.expand`): a spec that passes :func:`parse_suite` has the right keys and value types,
and every error names the file and the key (with a "did you mean" for a misspelt key).
"""
from __future__ import annotations

import difflib
import itertools
import os
from pathlib import Path
from typing import Iterable

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from ..config import MATCHES
from ..environment import DTYPES
from ..recurrence import NONLINEARITIES

SUITE_KEYS = ("name", "description", "seeds", "device", "dtype", "hidden_size", "nonlinearity",
              "threads", "workers", "train", "model", "transition", "experiment")
TRANSITION_KEYS = ("name", "label", "options")
EXPERIMENT_KEYS = ("probe", "task", "options", "train", "model", "hidden_size", "match", "budget", "seeds",
                   "nonlinearity", "transitions", "paper", "measure", "measure_batch")
#: what a task run measures at init and after training (split init / final)
DEFAULT_MEASURE = ("jacobian", "spectrum")
DEFAULT_MEASURE_BATCH = 8
#: the suite `stability run` runs when none is named
DEFAULT_SUITE = "quick"


class SuiteError(ValueError):
    """A suite spec that cannot be run; the message names the file and the key."""


def _suite_dirs() -> list[Path]:
    dirs = [Path(__file__).resolve().parents[1] / "suites"]  # package data: stability/suites/*.toml
    root = Path(__file__).resolve().parents[2]  # a source checkout (or an editable install)
    if (root / "pyproject.toml").is_file() and (root / "suites").is_dir():
        dirs.append(root / "suites")
    return [d for d in dirs if d.is_dir()]


def shipped_suites() -> dict[str, str]:
    """Names of the shipped suites → the file each is read from."""
    found: dict[str, str] = {}
    for d in _suite_dirs():
        for p in sorted(d.glob("*.toml")):
            found.setdefault(p.stem, str(p))
    return dict(sorted(found.items()))


def suite_source(suite: str | os.PathLike | None) -> tuple[str, str]:
    """The TOML text of a suite given as a shipped name or a path, and its origin for messages."""
    if suite is None:
        suite = DEFAULT_SUITE
    text_path = Path(suite)
    looks_like_path = isinstance(suite, os.PathLike) or str(suite).endswith(".toml") or os.sep in str(suite)
    if text_path.is_file():
        return _read(text_path), str(text_path)
    shipped = shipped_suites()
    if not looks_like_path and str(suite) in shipped:
        where = shipped[str(suite)]
        return _read(Path(where)), where
    if looks_like_path:
        raise SuiteError(f"suite file {str(suite)!r} does not exist")
    raise SuiteError(f"unknown suite {str(suite)!r}: not a file, nor a shipped suite; "
                     f"shipped: {', '.join(shipped)}")


def suite_description(name: str) -> str:
    """The first line of a shipped suite's description ("" where it has none or cannot be read)."""
    try:
        text, _ = suite_source(name)
        return (tomllib.loads(text).get("description") or "").strip().splitlines()[0]
    except (SuiteError, tomllib.TOMLDecodeError, IndexError):
        return ""


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path}: not a text (UTF-8) TOML file ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise SuiteError(f"{path}: cannot be read ({exc.strerror or exc})") from None



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
        for key in ("options", "train", "paper", "model"):
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
    for key in ("train", "model"):
        if not isinstance(spec.get(key, {}), dict):
            raise SuiteError(f"{origin}: {key} must be a table")
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

