"""One name -> class table for the package's pluggable parts (routing policies, peer routers).

Why one class: each plug-in kind needs the same three things (a ``@register`` decorator that refuses a name taken
by another class, the list of names, a lookup whose error names the known ones); writing them per kind gave
copies that differed only in wording. Each kind keeps its own module-level functions as thin aliases.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, TypeVar

C = TypeVar("C", bound=type)


class Registry:
    """Classes by name for one kind of plug-in (``kind`` words the errors: "routing policy", "peer router")."""

    def __init__(self, kind: str, *, set_name: bool = False):
        self.kind, self.set_name = kind, set_name  # set_name: the class's ``name`` attribute becomes its key
        self._classes: dict[str, type] = {}

    def register(self, name: str) -> Callable[[C], C]:
        """Class decorator: ``@registry.register("knn")``."""

        def deco(cls: C) -> C:
            have = self._classes.get(name)
            if have is not None and have is not cls:
                raise ValueError(f"{self.kind} {name!r} is already registered ({have.__name__})")
            if self.set_name:
                cls.name = name
            self._classes[name] = cls
            return cls

        return deco

    def names(self) -> tuple[str, ...]:
        return tuple(self._classes)

    def get(self, name: str) -> type:
        """The class registered as ``name`` (ValueError naming the known ones otherwise)."""
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.kind} {name!r}; expected one of {self.names()}") from None

    def add(self, name: str, cls: type) -> None:
        """Register ``cls`` without a decorator (e.g. a class defined in a test)."""
        self.register(name)(cls)

    @contextlib.contextmanager
    def snapshot(self) -> Iterator["Registry"]:
        """Registrations made inside the block are undone when it ends (tests that add a plug-in)."""
        saved = dict(self._classes)
        try:
            yield self
        finally:
            self._classes.clear()
            self._classes.update(saved)
