"""What can be searched: specs, spaces (registered by name), building, counting, ONNX export."""

from __future__ import annotations

from search_spaces import denoise, enhance, sr  # noqa: F401  (registers the spaces)
from search_spaces.base import SearchSpace
from search_spaces.counting import Counts, count
from search_spaces.network import SearchedNet, build
from search_spaces.onnx_export import export_onnx
from search_spaces.registry import UnknownSpaceError, get_space, list_spaces, register_space
from search_spaces.spec import SCHEMA_VERSION, ArchSpec, Conv, Level, SpecError, load_spec

__all__ = [
    "SCHEMA_VERSION", "ArchSpec", "Conv", "Counts", "Level", "SearchSpace", "SearchedNet", "SpecError",
    "UnknownSpaceError", "build", "count", "export_onnx", "get_space", "list_spaces", "load_spec",
    "register_space",
]
