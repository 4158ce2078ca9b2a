"""The asv benchmarks' parameter grids do not depend on the installed commit of stability.

asv runs a case by its index in the grid it discovered, in a process that imported another
commit; a grid read from the package shifted every case after a new transition (recorded
history: "spectral" timed nnRNN; docs/speed.md).
"""
from __future__ import annotations

import importlib
import inspect

import pytest

from stability import transitions

MODULES = ["common", "bench_numerics", "bench_probes", "bench_training", "bench_transitions"]


def _suite():
    return {name: importlib.import_module(f"suites.asv.{name}") for name in MODULES}


def _grids(modules) -> dict:
    grids = {}
    for name, module in modules.items():
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and hasattr(cls, "params"):
                grids[f"{name}.{cls_name}"] = [list(p) for p in cls.params]
    return grids


def test_fixed_lists_are_the_packages_builtins():
    from suites.asv.common import BUILTIN_TRANSITIONS, REFLECTED_TRANSITIONS

    builtins = [n for n in transitions.available() if transitions.get(n).__module__.startswith("stability.")]
    assert sorted(BUILTIN_TRANSITIONS) == sorted(builtins)
    assert sorted(REFLECTED_TRANSITIONS) == sorted(n for n in builtins if "reflectors" in transitions.option_names(n))


def test_grids_do_not_depend_on_the_installed_transitions(monkeypatch):
    modules = _suite()
    before = _grids(modules)
    assert any("nnrnn" in str(grid) for grid in before.values())
    older = [n for n in transitions.available() if n != "nnrnn"]  # a commit before nnRNN
    monkeypatch.setattr(transitions, "available", lambda: list(older))
    try:
        after = _grids({name: importlib.reload(module) for name, module in modules.items()})
    finally:
        monkeypatch.undo()
        for module in modules.values():
            importlib.reload(module)
    assert after == before


def test_a_transition_the_commit_lacks_is_skipped_the_asv_way(monkeypatch):
    import torch

    from suites.asv.bench_numerics import EngineAgreement, GradientHalfLife
    from suites.asv.common import make_model

    older = [n for n in transitions.available() if n != "nnrnn"]
    monkeypatch.setattr(transitions, "available", lambda: list(older))
    with pytest.raises(NotImplementedError, match="nnrnn"):
        make_model("nnrnn", 8, torch.device("cpu"))
    with pytest.raises(NotImplementedError, match="nnrnn"):
        GradientHalfLife().setup("nnrnn", "cpu")
    with pytest.raises(NotImplementedError, match="nnrnn"):
        EngineAgreement().setup("nnrnn", "fused", "cpu")
    assert make_model("spectral", 8, torch.device("cpu")) is not None
