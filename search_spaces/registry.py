"""Registries of named, pluggable things, in the style of timm's model registry: one style for all.

``Registry`` maps names to objects registered with its decorator (``@SPACES.register``); lookups of
an unknown name raise the registry's error listing what is known. Search spaces, latency backends,
samplers, loss terms and CLI commands each keep one (docs/architecture.md). It lives here, in the lowest
package, so that latency_db and nas can use it without importing upward.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

from search_spaces.errors import UsageError

if TYPE_CHECKING:
    from search_spaces.base import SearchSpace

T = TypeVar("T")


class UnknownNameError(UsageError, KeyError):
    """No entry is registered under that name; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0])


class UnknownSpaceError(UnknownNameError):
    """No space is registered under that name."""


class Registry(Generic[T]):
    """Named entries in registration order; ``kind`` names them in errors ("loss", "sampler", ...)."""

    def __init__(self, kind: str, error: type[Exception] = UnknownNameError) -> None:
        self.kind = kind
        self.error = error
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: register the object under ``name`` (default: its ``__name__``)."""
        def add(obj: T) -> T:
            key = name if name is not None else obj.__name__  # type: ignore[attr-defined]
            if key in self._entries:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._entries[key] = obj
            return obj

        return add

    def names(self, pattern: str = "*") -> tuple[str, ...]:
        """Registered names matching a shell-style pattern, in registration order."""
        return tuple(n for n in self._entries if fnmatch.fnmatchcase(n, pattern))

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise self.error(f"unknown {self.kind} '{name}': choose one of {', '.join(self.names())}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def values(self) -> list[T]:
        return list(self._entries.values())


SPACES: Registry[Callable[[], SearchSpace]] = Registry("task or space", UnknownSpaceError)


def register_space(factory: Callable[[], SearchSpace]) -> Callable[[], SearchSpace]:
    """Decorator: register a space factory under its function name (e.g. ``sr2x``)."""
    return SPACES.register()(factory)


def list_spaces(pattern: str = "*") -> list[str]:
    """Registered space names matching a shell-style pattern, sorted (``list_spaces('sr*')``)."""
    return sorted(SPACES.names(pattern))


def get_space(name: str) -> SearchSpace:
    """A fresh instance of the named space; an unknown name lists the known ones."""
    return SPACES.get(name)()
