"""Registry of named search spaces, in the style of timm's model registry."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from search_spaces.base import SearchSpace

_FACTORIES: dict[str, Callable[[], SearchSpace]] = {}


class UnknownSpaceError(KeyError):
    """No space is registered under that name."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_space(factory: Callable[[], SearchSpace]) -> Callable[[], SearchSpace]:
    """Decorator: register ``factory`` under its function name (e.g. ``sr2x``)."""
    name = factory.__name__
    if name in _FACTORIES:
        raise ValueError(f"search space '{name}' is registered twice")
    _FACTORIES[name] = factory
    return factory


def list_spaces(pattern: str = "*") -> list[str]:
    """Registered space names matching a shell-style pattern, sorted (``list_spaces('sr*')``)."""
    return sorted(n for n in _FACTORIES if fnmatch.fnmatchcase(n, pattern))


def get_space(name: str) -> SearchSpace:
    """A fresh instance of the named space; an unknown name lists the known ones."""
    try:
        return _FACTORIES[name]()
    except KeyError:
        raise UnknownSpaceError(
            f"unknown task or space '{name}': choose one of {', '.join(list_spaces())}"
        ) from None
