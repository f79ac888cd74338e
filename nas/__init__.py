"""nas: hardware-aware neural architecture search for real-time visual networks."""

from __future__ import annotations

__version__ = "0.1.0"
