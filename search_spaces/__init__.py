"""What can be searched: specs, spaces (registered by name), plans, building, counting, ONNX export.

Importing the package loads no torch: ``build``, ``SearchedNet`` and ``export_onnx`` (the parts
that need it) load on first use, so ``nas --help`` and the registries stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from search_spaces import denoise, enhance, sr  # noqa: F401  (registers the spaces)
from search_spaces.base import SearchSpace
from search_spaces.counting import Counts, count
from search_spaces.registry import UnknownSpaceError, get_space, list_spaces, register_space
from search_spaces.spec import SCHEMA_VERSION, ArchSpec, Conv, Level, SpecError, load_spec

if TYPE_CHECKING:
    from search_spaces.network import SearchedNet, build
    from search_spaces.onnx_export import export_onnx

_LAZY = {"SearchedNet": "search_spaces.network", "build": "search_spaces.network",
         "export_onnx": "search_spaces.onnx_export"}


def __getattr__(name: str) -> Any:
    """The torch-backed names, imported when first asked for."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'search_spaces' has no attribute {name!r}")


__all__ = [
    "SCHEMA_VERSION", "ArchSpec", "Conv", "Counts", "Level", "SearchSpace", "SearchedNet", "SpecError",
    "UnknownSpaceError", "build", "count", "export_onnx", "get_space", "list_spaces", "load_spec",
    "register_space",
]
