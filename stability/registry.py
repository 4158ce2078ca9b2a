"""One registry class for everything found by name: transitions, tasks and probes.

    TRANSITIONS = Registry("transition", entry_points="stability.transitions")

    @TRANSITIONS.register("diagonal")
    class Diagonal(Transition): ...

``available()`` lists the names (loading the entry-point group, if any, the first time), ``get``
returns the object or raises a ``ValueError`` naming what is available (with a "did you mean").
Plugins register through the entry-point group (``name = "package.module:object"``); a broken
plugin warns and is left out, it never breaks the suite.
"""
from __future__ import annotations

import warnings
from importlib import metadata
from typing import Callable, Generic, TypeVar

from .checks import did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """Named objects of one kind; ``check(name, obj)`` refuses what does not belong."""

    def __init__(self, kind: str, *, entry_points: str | None = None,
                 check: Callable[[str, object], None] | None = None, aliases: dict[str, str] | None = None):
        self.kind = kind
        self.entry_points = entry_points
        self.aliases = dict(aliases or {})
        self._check = check
        self._items: dict[str, T] = {}
        self._loaded = entry_points is None

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding ``obj`` under ``name`` (a class gets ``obj.name = name`` unless it has a name:
        registering it again under an alias does not rename it)."""
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def decorate(obj: T) -> T:
            if self._check is not None:
                self._check(name, obj)
            if isinstance(obj, type) and not obj.__dict__.get("name"):  # a class keeps its first name
                obj.name = name
            self._items[name] = obj
            return obj

        return decorate

    def unregister(self, name: str) -> None:
        """Remove ``name`` (a no-op when it is not registered); for tests and interactive use."""
        self._items.pop(name, None)

    def _load_entry_points(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for ep in metadata.entry_points(group=self.entry_points):
            if ep.name in self._items:
                continue
            try:
                self.register(ep.name)(ep.load())
            except Exception as exc:  # a broken plugin must not break the suite
                warnings.warn(f"could not load {self.kind} plugin {ep.name!r} ({ep.value}): {exc}")

    def available(self) -> list[str]:
        """Every registered name (built-ins and plugins), sorted."""
        self._load_entry_points()
        return sorted(self._items)

    def canonical(self, name: str) -> str:
        """``name`` with aliases resolved (unknown names are returned as they are)."""
        return self.aliases.get(name, name) if isinstance(name, str) else name

    def __contains__(self, name) -> bool:
        self._load_entry_points()
        return self.canonical(name) in self._items

    def get(self, name: str) -> T:
        """The object registered under ``name`` (or an alias of it)."""
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} name must be a string, got {type(name).__name__}")
        self._load_entry_points()
        key = self.canonical(name)
        if key not in self._items:
            names = self.available()
            raise ValueError(f"unknown {self.kind} {name!r}{did_you_mean(name, names)}; "
                             f"available: {', '.join(names)}")
        return self._items[key]
