"""Compose durations ("1m30s", "500ms", "2h") as seconds, the way Go's time.ParseDuration reads them."""
from __future__ import annotations

import re

from pystack.errors import UserError

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def seconds(value: str | int | float | None, default: float | None = None) -> float | None:
    """Seconds of a duration string (or a number of seconds); ``default`` when unset."""
    if value is None or value == "":
        return default
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise UserError(f"invalid duration: {value!r}")
    return total


def nanos(value: str | int | float | None) -> int:
    """Nanoseconds for the Engine API (0 when unset: the engine's default)."""
    s = seconds(value, 0.0)
    return int(round((s or 0.0) * 1e9))
