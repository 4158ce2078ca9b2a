"""A checked spec expanded into runs: names resolved, grids multiplied out, one RunConfig each.

transition × its option grid × experiment × its option grid × train grid × hidden size (or
parameter budget) × seed; every point gets a resolved :class:`~stability.config.RunConfig`
and its stable id. Two grid points that resolve to the same config are one run (said in
``Suite.notes``).
"""
from __future__ import annotations

import fnmatch
import inspect
import itertools
import os
import re
from dataclasses import dataclass, field

from .. import probes
from ..checks import did_you_mean
from ..config import RunConfig
from ..environment import resolve_device
from ..network import is_gated
from ..train import PROBES as TRAIN_PROBES
from .resolve import DATA_SOURCES, Resolver, data_dirs, data_needed, plain_json, train_signature
from .spec import (DEFAULT_MEASURE, DEFAULT_MEASURE_BATCH, SuiteError, _axis, _grid, _unknown_key, parse_suite,
                   suite_source)


@dataclass(frozen=True)
class Run:
    """One point of the grid: its id, its resolved config and what it needs at run time."""

    id: str
    config: RunConfig
    label: str
    runtime: dict = field(default_factory=dict)  # not hashed: data directories and the like


@dataclass
class Suite:
    name: str
    origin: str
    description: str
    runs: list[Run]
    notes: list[str] = field(default_factory=list)  # runs skipped or merged, and why
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
    given = device if device is not None else spec.get("device", "auto")
    try:
        dev = resolve_device(given)
    except ValueError as exc:
        raise SuiteError(str(exc) if device is not None else f"{origin}: device = {given!r}: {exc}") from None
    runs, notes = _expand(spec, origin, dev, data_dirs(ptb_dir, mnist_dir))
    s = Suite(spec["name"], origin, spec.get("description", ""), runs, notes, spec.get("threads"),
              spec.get("workers"))
    return s.select(only)


def _fmt(options: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


def _paper_for(paper: dict, label: str, tname: str) -> dict:
    """Reported figures for one transition: plain entries apply to all, tables per label/name."""
    out = {k: v for k, v in paper.items() if not isinstance(v, dict)}
    for key in (tname, label):
        if isinstance(paper.get(key), dict):
            out.update(paper[key])
    return out


def _expand(spec: dict, origin: str, device: str, dirs: dict[str, str]) -> tuple[list[Run], list[str]]:
    res = Resolver(origin)
    name = spec["name"]
    dtype = spec.get("dtype", "float32")
    top_train = spec.get("train", {})
    trans = []  # (label, name, [resolved option grid points], where)
    for i, t in enumerate(spec["transition"]):
        where = f"transition[{i}]"
        checked = [res.transition_options(t["name"], g, where) for g in _grid(t.get("options", {}))]
        trans.append((t.get("label", t["name"]), t["name"], checked, where))
    train_sig = train_signature()
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
        paper = plain_json(e.get("paper", {}), origin, f"{where}.paper")
        measure = [probes.PROBES.canonical(m) for m in e.get("measure", DEFAULT_MEASURE)] if kind == "task" else []
        measure_given = "measure" in e
        for m in measure:
            if m not in probes.PROBES:
                raise SuiteError(f"{origin}: {where}.measure: {m!r} is not a probe the runner can measure "
                                 f"at init/final; allowed: {', '.join(probes.available())}")
        runtime: dict = {}
        if kind == "probe":
            ename = probes.PROBES.canonical(ename)
            if ename not in probes.PROBES:
                raise SuiteError(f"{origin}: {where}.probe = {ename!r} is not a known probe"
                                 f"{did_you_mean(ename, probes.available())}; available: {', '.join(probes.available())}")
            option_grid = [(o, res.probe_options(ename, o, where)) for o in _grid(e.get("options", {}))]
            train_grid = [None]
        else:
            res.task_name(ename, where)
            opts = dict(e.get("options", {}))
            data_dir = opts.pop("data_dir", None)
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
            option_grid = [(o, plain_json(o, origin, f"{where}.options")) for o in _grid(opts)]
            tdefaults = {**top_train, **e.get("train", {})}
            for k in tdefaults:
                if k not in train_sig:
                    raise _unknown_key(origin, f"{where}.train", k, list(train_sig))
            if "steps" not in tdefaults and train_sig.get("steps", inspect.Parameter.empty) is inspect.Parameter.empty:
                raise SuiteError(f"{origin}: {where}.train needs steps = <training steps>")
            train_grid = [res.train_options(where, g, train_sig) for g in _grid(tdefaults)]
        model_grid = [res.model_options(where, g) for g in _grid({**spec.get("model", {}), **e.get("model", {})})]
        hidden_axis = _axis(e.get("hidden_size", spec.get("hidden_size", 64)))
        budget_axis = _axis(e["budget"]) if match == "params" else [None]
        if kind == "probe":  # the probe's own options: try them once on a small model
            for given, options in option_grid:
                for n in (hidden_axis if match == "hidden" else [None]):
                    res.try_probe(ename, options, n, nonlin, f"{where}.options")
        for given, options in option_grid:
            if kind == "task":
                task, task_options, definition = res.task(ename, options, runtime.get("data_dir"), where)
                in_size, out_size = int(task.input_size), int(task.output_size)
                for tr in train_grid:  # decay_every = "epoch" needs a task with epochs
                    res.check_decay(where, tr, task)
            else:
                task_options, definition = options, {}
                in_size, out_size = int(options["input_size"]), 1
            task_key = f"{ename}:{plain_json(options, origin, where)}" if kind == "task" else ""
            for label, tname, tgrid, twhere in selected:
                row_nonlin = nonlin
                if is_gated(tname):  # a gated cell has its own nonlinearities: its rows record tanh
                    row_nonlin = "tanh"
                    for tr in train_grid:
                        if (tr or {}).get("transition_lr") not in (None, (tr or {}).get("lr")):
                            raise SuiteError(f"{origin}: {where}.train.transition_lr = {tr['transition_lr']!r}: the "
                                             f"gated cell {tname!r} has no transition; allowed: unset or equal "
                                             f"to lr = {tr.get('lr')!r}")
                    if nonlin != "tanh":
                        notes.append(f"{where}: nonlinearity = {nonlin!r} does not apply to the gated cell "
                                     f"{tname!r}: its runs record 'tanh'")
                row_models = []
                for mo in model_grid:
                    row_mo = (res.row_model(tname, mo, where, notes, task=task) if kind == "task" else
                              res.row_model(tname, mo, where, notes, sequence_length=options["T"]
                                            if "T" in options else None))
                    if kind == "probe" and not _plain(tname, row_mo):
                        res.try_probe(ename, options, None, nonlin, f"{where}.options", tname, row_mo)
                    row_measure = (_row_measure(res, measure, measure_given, tname, row_mo, task, task_key, where,
                                                notes, train_grid) if kind == "task" else [])
                    row_models.append((mo, row_mo, row_measure))
                for topts in tgrid:
                    for budget in budget_axis:
                        for n_given in (hidden_axis if match == "hidden" else [None]):
                            for tr, (mo, row_mo, row_measure), seed in itertools.product(train_grid, row_models,
                                                                                           seeds):
                                n = n_given if n_given is not None else res.hidden_for_budget(
                                    tname, {**topts, **row_mo}, budget, in_size, out_size, where)
                                resolved = res.transition(tname, topts, n, twhere)
                                cfg = RunConfig(
                                    suite=name, kind=kind, name=ename, transition=tname,
                                    transition_options=resolved, hidden_size=int(n), nonlinearity=row_nonlin,
                                    options=task_options, train=tr if tr is not None else {},
                                    seed=int(seed), device=device, dtype=dtype, match=match, budget=budget,
                                    measure=({"probes": row_measure,
                                              "batch": e.get("measure_batch", DEFAULT_MEASURE_BATCH)}
                                             if kind == "task" else None),
                                    definition=definition if kind == "task" else {},
                                    paper=_paper_for(paper, label, tname), model=row_mo)
                                tag = f"{tname}({_fmt(topts)})" if topts else tname
                                if label != tname:
                                    tag = f"{label}:{tag}"
                                olab = f"({_fmt(given)})" if given else ""
                                shown = {k: v for k, v in row_mo.items() if k != "sequence_length"}
                                if shown:
                                    tag += f" [{_fmt(shown)}]"
                                extra = f" budget={budget}" if budget is not None else ""
                                lab = f"{kind}:{ename}{olab} {tag} n={n}{extra} seed={seed}"
                                rid = cfg.id
                                if rid in runs:
                                    if runs[rid].label != lab:
                                            notes.append(f"{lab} resolves to the same config as "
                                                     f"{runs[rid].label}: run once")
                                    continue
                                runs[rid] = Run(rid, cfg, lab, dict(runtime))
    return list(runs.values()), merge_notes(notes)


def merge_notes(notes: list[str]) -> list[str]:
    """The notes once each; a note that several experiments share (``experiment[i]: same text``)
    becomes one line naming them all (``experiment[0, 2, 4]: same text``), in first-seen order."""
    merged: dict[str, list[str]] = {}
    for note in dict.fromkeys(notes):
        m = re.match(r"experiment\[(\d+)\]: (.*)", note, re.S)
        key, index = (m.group(2), m.group(1)) if m else (note, None)
        merged.setdefault(key, [])
        if index is not None:
            merged[key].append(index)
    return [f"experiment[{', '.join(idx)}]: {text}" if idx else text for text, idx in merged.items()]


def _plain(tname: str, model: dict) -> bool:
    """A transition's RecurrentNet as it always was (unidirectional, readout "last"): every probe measures it."""
    return not is_gated(tname) and not model.get("bidirectional") and model.get("readout", "last") == "last"


def _row_measure(res: Resolver, measure: list[str], given: bool, tname: str, model: dict, task, task_key: str,
                 where: str, notes: list[str], train_grid: list) -> list[str]:
    """The probes a row measures at init and final. A model other than a plain RecurrentNet (a gated cell,
    bidirectional, readout "all") is tried on each: one that cannot be measured is refused where the suite
    asked for it (``measure = [...]``, or the training loop's ``probes``), left out with a note where it is
    the default."""
    if _plain(tname, model):
        return list(measure)
    kept = []
    for m in measure:
        why = res.probe_refusal(m, tname, model, task, task_key)
        if why is None:
            kept.append(m)
        elif given:
            raise SuiteError(f"{res.origin}: {where}.measure: probe {m!r} cannot measure {tname!r} "
                             f"({_fmt(model) or 'defaults'}): {why}")
        else:
            notes.append(f"{where}: probe {m!r} cannot measure {tname!r} ({_fmt(model) or 'defaults'}): "
                         f"left out of its measurements")
    for tr in train_grid:
        for scheduled in (tr or {}).get("probes") or {}:
            probe = TRAIN_PROBES[scheduled][0] if scheduled in TRAIN_PROBES else scheduled
            why = res.probe_refusal(probe, tname, model, task, task_key)
            if why is not None:
                raise SuiteError(f"{res.origin}: {where}.train.probes: {scheduled!r} cannot measure {tname!r} "
                                 f"({_fmt(model) or 'defaults'}): {why}")
    return kept
