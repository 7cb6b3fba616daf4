"""The generic registry of a pluggable part: a name to an implementation, imported on first use.

A leaf: it imports nothing of the project, so that any module may declare a registry
(``registries`` for the campaign's parts, ``llm.registry`` for providers, ``training.sources``).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Generic, TypeVar

T = TypeVar("T")
EMBEDDED = "embedded"  # the backend of the parts that run here, with no model call


class Registry(Generic[T]):
    """Named implementations of one part; ``"module:attr"`` entries are imported on first use."""

    def __init__(self, part: str, entries: Mapping[str, T | str]):
        self.part = part
        self._entries: dict[str, T | str] = dict(entries)

    def add(self, name: str, entry: T | str) -> None:
        """Register ``entry`` under ``name`` (replacing any earlier one)."""
        self._entries[name] = entry

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def check(self, name: str) -> str:
        """``name`` when registered, else ValueError listing what is."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.part} {name!r}; expected one of {self.names()}")
        return name

    def get(self, name: str) -> T:
        entry = self._entries[self.check(name)]
        if isinstance(entry, str):
            module, _, attr = entry.partition(":")
            loaded: T = getattr(importlib.import_module(module), attr)
            self._entries[name] = entry = loaded
        return entry
