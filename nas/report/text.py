"""Small text and number helpers of the report: every value from the run dir is escaped or checked."""

from __future__ import annotations

import html
import json
from typing import Any

from nas.rundir import number

__all__ = ["escape", "fmt", "pairs", "script_json", "si"]



def pairs(value: Any) -> list[list[float]]:
    """A curve [[step, value], ...] with finite numbers only; anything else gives an empty curve."""
    if not isinstance(value, list):
        return []
    out = []
    for item in value:
        if isinstance(item, (list, tuple)) and len(item) >= 2:
            x, y = number(item[0]), number(item[1])
            if x is not None and y is not None:
                out.append([x, y])
    return out


def escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, digits: int = 2, unit: str = "") -> str:
    f = number(value)
    return "n/a" if f is None else f"{f:.{digits}f}{unit}"


def si(value: Any, unit: str) -> str:
    """1234567 -> '1.23 M' + unit."""
    f = number(value)
    if f is None:
        return "n/a"
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(f) >= factor:
            return f"{f / factor:.3g} {prefix}{unit}"
    return f"{f:.0f} {unit}"


def script_json(data: Any) -> str:
    """JSON safe inside <script type="application/json">: no '<', '>' or '&' survive literally."""
    text = json.dumps(data, allow_nan=False, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
